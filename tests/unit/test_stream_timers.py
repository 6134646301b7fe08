"""Timers of a client stream as transcripts on a task.Clock (in process, no waiting):
XEP-0199 keepalive pings of idle clients (RFC 6120 §4.9.3.4 connection-timeout for a silent
one), the limit on how long an unauthenticated handshake may take, and the growing delay of
failed logins' replies."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from tests.fuzz.world import c2s_header
from tests.support.streams import STREAM_END, C, StreamServer, stream_error

PING = "{urn:xmpp:ping}ping"


@pytest.fixture
def srv() -> Iterator[StreamServer]:
    s = StreamServer(["disco", "ping", "roster", "presence"],
                     {"ping": {"interval": 60.0, "timeout": 10.0}},
                     users=("alive", "silent", "busy"),
                     extra={"limits": {"handshake_timeout": 20.0}})
    yield s
    s.close()


def test_idle_clients_are_pinged_and_a_silent_one_is_closed(srv: StreamServer) -> None:
    alive, silent, busy = (srv.login(u) for u in ("alive", "silent", "busy"))
    for t in range(6):  # busy talks every 10 s; nobody is pinged before 60 s of silence
        srv.clock.advance(10)
        busy.send("<presence/>")
        assert t == 5 or not [e for c in (alive, silent) for e in c.read()]
    pings = {}
    for c in (alive, silent):
        [ping] = c.read()
        assert ping.tag == C + "iq" and ping.get("type") == "get"
        assert ping.find(PING) is not None and ping.get("from") == "localhost"
        pings[c] = ping
    assert not [e for e in busy.read() if e.find(PING) is not None]
    alive.send(f"<iq type='result' id='{pings[alive].get('id')}' to='localhost'/>")
    srv.clock.advance(9.9)
    assert not silent.read() and not silent.closed_by_server
    srv.clock.advance(0.2)
    out = silent.read()
    assert stream_error(out) == "connection-timeout" and out[-1].tag == STREAM_END
    assert not alive.read() and not alive.closed_by_server
    srv.clock.advance(60)  # alive answered: pinged again only after another silent minute
    [again] = alive.read()
    assert again.find(PING) is not None


def test_an_unfinished_handshake_is_closed(srv: StreamServer) -> None:
    slow = srv.connect()
    slow.feed(c2s_header())
    slow.read()
    srv.clock.advance(19.9)
    assert not slow.read() and not slow.closed_by_server
    srv.clock.advance(0.2)
    assert stream_error(slow.read()) == "connection-timeout"
    # logging in within the limit cancels it
    quick = srv.login("busy")
    srv.clock.advance(30)
    assert stream_error(quick.read()) is None and not quick.closed_by_server


def test_failed_logins_are_answered_later_and_later_then_the_stream_ends() -> None:
    """Failure replies are held back once an address has failed ``throttle_after`` times,
    doubling up to ``throttle_max_delay``; the fifth failure on a stream ends it
    (not-authorized). On a Clock, the delays are checked to the tenth of a second."""
    srv = StreamServer(["disco"], users=("many",),
                       extra={"auth": {"throttle_after": 2, "throttle_max_delay": 2.0}})
    try:
        c = srv.connect()
        c.feed(c2s_header())
        c.read()
        token = base64.b64encode(b"\0many\0nope").decode()
        bad = ("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
               f"{token}</auth>")
        failure = "{urn:ietf:params:xml:ns:xmpp-sasl}failure"
        for delay in (0.0, 0.0, 1.0, 2.0, 2.0):
            c.send(bad)
            if delay:
                srv.clock.advance(delay - 0.05)
                assert not c.read()
                srv.clock.advance(0.1)
            out = c.read()
            assert out and out[0].tag == failure, out
        assert stream_error(out) == "not-authorized"
    finally:
        srv.close()
