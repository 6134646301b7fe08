"""S2SManager as the router's default route, in process (task.Clock, no sockets): queue while
connecting, flush in order, bounce everything queued on failure, back off, bounded queue."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from federation.manager import RETRY_INITIAL, S2SManager
from federation.outbound import ConnectFailure
from tests.support.inproc import FakeSession, make_server
from xmppd import stanza as st
from xmppd.errors import parse_error


class FakeStream:
    def __init__(self, local: str) -> None:
        self.authorized = {local}
        self.writable = True
        self.sent: list[str] = []
        self.peer_dialback_errors = False
        self.dialback_ready = True

    def send_stanza(self, el: st.Element) -> None:
        self.sent.append(st.text(st.child(el, "body", st.NS_CLIENT)))  # type: ignore[arg-type]


def setup(max_queue: int = 1000) -> tuple[Any, S2SManager, FakeSession, list[Deferred[Any]]]:
    server = make_server(plugins=[], hosts=("a.test",))
    object.__setattr__(server.config.federation, "max_queue", max_queue)
    mgr = S2SManager(server)
    server.router.default_route = mgr
    attempts: list[Deferred[Any]] = []

    async def fake_open(route: Any) -> Any:
        d: Deferred[Any] = Deferred()
        attempts.append(d)
        return await d

    mgr._open = fake_open  # type: ignore[method-assign]
    return server, mgr, FakeSession(server, "u@a.test/r", priority=None), attempts


def send(sess: FakeSession, body: str, to: str = "v@b.test") -> None:
    msg = st.make("message", attrs={"to": to, "type": "chat", "id": body})
    st.add(msg, "body", text_=body)
    sess.stanza(msg)


def errors(sess: FakeSession) -> list[tuple[str | None, str]]:
    out = []
    for el in sess.take():
        err = parse_error(el)
        assert err is not None, st.serialize(el)
        out.append((el.getAttribute("id"), err[1]))
    return out


def test_queue_flushes_in_order_once_connected() -> None:
    _, mgr, sess, attempts = setup()
    for i in range(5):
        send(sess, f"m{i}")
    assert len(attempts) == 1  # one connection attempt for the pair, not five
    route = mgr.routes[("a.test", "b.test")]
    assert [st.text(st.child(m, "body", st.NS_CLIENT)) for m in route.queue] == [
        f"m{i}" for i in range(5)]
    stream = FakeStream("a.test")
    attempts[0].callback(stream)
    send(sess, "m5")
    assert stream.sent == [f"m{i}" for i in range(6)]
    assert sess.take() == []


def test_failure_bounces_every_queued_stanza_then_backs_off() -> None:
    server, mgr, sess, attempts = setup()
    for i in range(3):
        send(sess, f"m{i}")
    attempts[0].errback(ConnectFailure("remote-server-timeout", "refused"))
    assert errors(sess) == [(f"m{i}", "remote-server-timeout") for i in range(3)]
    # within the back-off: bounced at once, no new attempt
    send(sess, "m3")
    assert errors(sess) == [("m3", "remote-server-timeout")] and len(attempts) == 1
    server.clock.advance(RETRY_INITIAL + 0.1)
    send(sess, "m4")
    assert len(attempts) == 2 and sess.take() == []
    attempts[1].errback(ConnectFailure("remote-server-not-found", "no such domain"))
    assert errors(sess) == [("m4", "remote-server-not-found")]
    assert mgr.routes[("a.test", "b.test")].backoff == 2 * RETRY_INITIAL  # doubled
    # an inbound authenticated stream from the peer ends the back-off early
    mgr.inbound_authenticated("b.test")
    send(sess, "m5")
    assert len(attempts) == 3


def test_queue_is_bounded() -> None:
    _, _, sess, attempts = setup(max_queue=2)
    for i in range(3):
        send(sess, f"m{i}")
    assert errors(sess) == [("m2", "resource-constraint")]
    attempts[0].callback(FakeStream("a.test"))


def test_lost_stream_reconnects_for_new_stanzas() -> None:
    _, mgr, sess, attempts = setup()
    send(sess, "m0")
    first = FakeStream("a.test")
    attempts[0].callback(first)
    assert first.sent == ["m0"]
    first.writable = False
    mgr._stream_lost(first)  # type: ignore[arg-type]
    send(sess, "m1")
    assert len(attempts) == 2
    second = FakeStream("a.test")
    attempts[1].callback(second)
    assert second.sent == ["m1"]


def test_pairs_are_independent_and_errors_are_never_bounced() -> None:
    _, mgr, sess, attempts = setup()
    send(sess, "to-b")
    send(sess, "to-c", to="w@c.test")
    assert len(attempts) == 2 and set(mgr.routes) == {("a.test", "b.test"),
                                                       ("a.test", "c.test")}
    err = st.make("message", attrs={"to": "v@b.test", "type": "error", "id": "e1"})
    sess.stanza(err)
    attempts[0].errback(ConnectFailure("remote-server-timeout", "x"))
    assert errors(sess) == [("to-b", "remote-server-timeout")]  # not the error stanza
    attempts[1].callback(FakeStream("a.test"))
    assert sess.take() == []


class IdleStream(FakeStream):
    def __init__(self, last_active: float) -> None:
        super().__init__("a.test")
        self.last_active = last_active
        self.peer = "192.0.2.1:5269"
        self.closed_by_us = False

    def close_stream(self) -> None:
        self.closed_by_us = True
        self.writable = False


def test_idle_streams_are_closed() -> None:
    server, mgr, sess, _ = setup()
    limit = server.config.federation.idle_timeout
    server.clock.advance(limit + 100)
    now = server.clock.seconds()
    old_in, fresh_in = IdleStream(now - limit - 1), IdleStream(now - 1)
    old_out, busy_out = IdleStream(now - limit - 1), IdleStream(now - limit - 1)
    mgr.inbound.update({old_in, fresh_in})  # type: ignore[arg-type]
    mgr.outbound.update({old_out, busy_out})  # type: ignore[arg-type]
    send(sess, "waiting")  # a queued stanza keeps its pair's stream from being idle
    mgr.routes[("a.test", "b.test")].stream = busy_out  # type: ignore[assignment]
    mgr._close_idle()
    assert old_in.closed_by_us and old_out.closed_by_us
    assert not fresh_in.closed_by_us and not busy_out.closed_by_us
