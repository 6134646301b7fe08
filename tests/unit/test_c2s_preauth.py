"""The pre-authentication IQ path (XEP-0077 registration) has the same error boundary as the
router's: a handler that fails unexpectedly gets the client an <internal-server-error/>
answer and a log line, never silence; and no answer carries an address."""

from __future__ import annotations

from typing import Any

from tests.fuzz.world import World
from xmppd.iq import IqRequest


def test_a_failing_preauth_handler_answers_internal_server_error() -> None:
    world = World()
    host = next(iter(world.server.hosts.values()))

    def broken(_req: IqRequest) -> Any:
        raise RuntimeError("a bug in a plugin")

    host.iq("get", "urn:example:broken", "query", broken, scope="preauth")
    header = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
              b"xmlns:stream='http://etherx.jabber.org/streams' to='" + host.domain.encode()
              + b"' version='1.0'>")
    out = world.run("c2s-tls", [header, b"<iq type='get' id='x1' from='eve@elsewhere' "
                                        b"to='localhost'><query xmlns='urn:example:broken'/>"
                                        b"</iq>"])
    written = b"".join(out.writes[out.prefix_writes:])
    assert b"id=\"x1\"" in written or b"id='x1'" in written, written
    assert b"internal-server-error" in written, written
    assert b"eve@elsewhere" not in written
    assert not out.exceptions


def test_an_unhandled_preauth_request_is_service_unavailable() -> None:
    """A request in a pre-authentication namespace that no handler takes (here a set where
    only a get is registered) gets the answer RFC 6120 §8.4 gives after binding too."""
    world = World()
    host = next(iter(world.server.hosts.values()))
    host.iq("get", "urn:example:only-get", "query", lambda _req: None, scope="preauth")
    header = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
              b"xmlns:stream='http://etherx.jabber.org/streams' to='" + host.domain.encode()
              + b"' version='1.0'>")
    out = world.run("c2s-tls", [header, b"<iq type='set' id='x2'><query "
                                        b"xmlns='urn:example:only-get'/></iq>"])
    written = b"".join(out.writes[out.prefix_writes:])
    assert b"service-unavailable" in written, written
    assert not out.exceptions
