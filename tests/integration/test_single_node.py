"""A single-node server needs neither txredisapi nor hiredis (the ``cluster`` extra): the
cluster package is imported only when ``[cluster]`` is configured (issue 20 item 1).

Each case runs in a fresh interpreter in which the two libraries cannot be imported (an
import hook refuses them), starts an XmppServer in that process on the real reactor with a
c2s listener on port 0, and talks XMPP to it over TCP.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.ca import CertAuthority
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
import importlib.abc
import sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("txredisapi", "hiredis"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Refuse())

from twisted.internet import defer, endpoints, protocol, task

import xmppd.server
from xmppd.config import from_dict

def config(data_dir, **extra):
    return from_dict({
        "hosts": {"localhost": {}},
        "data_dir": data_dir,
        "storage": {"url": "sqlite://"},
        "listeners": [{"type": "c2s", "address": "127.0.0.1", "port": 0}],
        "plugins": {"enabled": ["disco", "ping"]},
        **extra,
    })
"""

SERVES = """
class Client(protocol.Protocol):
    def connectionMade(self):
        self.got = b""
        self.features = defer.Deferred()
        self.transport.write(b"<?xml version='1.0'?><stream:stream to='localhost' "
                             b"version='1.0' xmlns='jabber:client' "
                             b"xmlns:stream='http://etherx.jabber.org/streams'>")

    def dataReceived(self, data):
        self.got += data
        if b"</stream:features>" in self.got and not self.features.called:
            self.features.callback(self.got)

async def main(reactor):
    server = xmppd.server.XmppServer(config(sys.argv[1]), reactor)
    await server.start()
    try:
        port = server.bound_port("c2s")
        ep = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        client = await endpoints.connectProtocol(ep, Client())
        got = await client.features
        assert b"urn:ietf:params:xml:ns:xmpp-tls" in got, got
        client.transport.loseConnection()
    finally:
        await server.stop()
    loaded = sorted(m for m in sys.modules
                    if m.split(".")[0] in ("txredisapi", "hiredis", "cluster"))
    print("loaded:", loaded)

task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
"""

REFUSES = """
async def main(reactor):
    cfg = config(sys.argv[1], cluster={"redis_url": "redis://127.0.0.1:1/0"})
    server = xmppd.server.XmppServer(cfg, reactor)
    try:
        await server.start()
    except RuntimeError as exc:
        print("refused:", exc)
    else:
        print("started")
        await server.stop()

task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
"""


def run(script: str, tmp_path: Path) -> str:
    code = textwrap.dedent(PRELUDE) + textwrap.dedent(script)
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_a_single_node_starts_and_serves_without_the_redis_libraries(tmp_path: Path) -> None:
    out = run(SERVES, tmp_path)
    assert "loaded: []" in out, out


def test_a_configured_cluster_without_the_redis_libraries_is_a_clear_error(
        tmp_path: Path) -> None:
    out = run(REFUSES, tmp_path)
    assert "refused: cluster.redis_url is set but txredisapi is not installed: " \
           "pip install 'xmppd[cluster]'" in out, out


def test_redis_unreachable_at_start_is_a_clear_error_not_a_hang(
        ca: CertAuthority, tmp_path: Path) -> None:
    """Issue 19, bad input: a node whose Redis does not answer exits with a message naming
    it (it retried for ever before, never listening)."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    try:
        srv = ServerProcess(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", ca, config={
            "cluster": {"redis_url": f"redis://127.0.0.1:{port}/0", "connect_timeout": 1.0}})
        with pytest.raises(RuntimeError) as exc:
            srv.start(timeout=30)
        assert "exited with 1" in str(exc.value)
        assert f"Redis at 127.0.0.1:{port} did not answer within 1 s" in srv.log()
    finally:
        closed.close()
