"""Micro-benchmark of one chat message through the server, in process: bytes into a client
stream (parse, checks), the router, delivery to the other client's stream (serialise,
write). No sockets, no TLS, no storage-bound plugins: what is left is the per-stanza code
path, so a change to it (a counter, a hook) shows as a difference of its cost.

    python -m bench.route_micro [--number N] [--repeat R]

Prints the best of R runs of N messages, in microseconds of this thread's CPU time per
message (CPU time, not wall time: other processes on the core then matter less). Compare
two versions by running each (PYTHONPATH=<other checkout> selects the other one),
interleaved, several times.
"""

from __future__ import annotations

import argparse
import gc
import time
import timeit
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from xmppd.c2s import C2SSession
from xmppd.config import from_dict
from xmppd.plugin import load_plugins
from xmppd.server import XmppServer

PLUGINS = ["disco", "ping", "roster", "presence", "carbons", "csi", "smacks", "hints",
           "blocking", "private", "caps"]
HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")


def _done(d: Any) -> None:
    out: list[Any] = []
    Deferred.fromCoroutine(d).addBoth(out.append)
    assert out, "did not finish synchronously"


def build() -> tuple[C2SSession, StringTransport]:
    cfg = from_dict({"hosts": {"localhost": {}}, "storage": {"url": "sqlite://"},
                     "plugins": {"enabled": PLUGINS}})
    server = XmppServer(cfg, Clock())
    server.db.migrate()
    _done(load_plugins(server.hosts["localhost"], PLUGINS))
    streams = []
    for user in ("alice", "bob"):
        session = C2SSession(server, direct_tls=True)
        transport = StringTransport()
        session.makeConnection(transport)
        session.dataReceived(HEADER)
        session.username = user  # authenticated (SASL is not what is measured)
        session.dataReceived(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:"
                             b"xmpp-bind'><resource>r</resource></bind></iq><presence/>")
        transport.clear()
        streams.append((session, transport))
    (alice, _), (_, bob_out) = streams
    return alice, bob_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    alice, bob_out = build()
    data = (b"<message to='bob@localhost/r' type='chat' id='m'><body>hello there</body>"
            b"</message>")

    def one() -> None:
        alice.dataReceived(data)
        bob_out.clear()

    one()
    assert alice.server.sessions.count() == 2
    gc.collect()
    best = min(timeit.repeat(one, timer=time.thread_time, number=args.number,
                             repeat=args.repeat)) / args.number
    print(f"{best * 1e6:.3f} us per message")


if __name__ == "__main__":
    main()
