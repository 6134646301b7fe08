"""One BOSH session (XEP-0124): requests taken in rid order, held, answered and replayed.

The session owns a BoshC2S. Request bodies are handed to it in rid order (§14.2); what it
writes waits in the outbox until a held request can carry it (§8). The rules, with their
sections:

* rids: a new request's rid must lie in the window after the last one processed (its size
  is 'requests', one more for a pause or terminate, §11); requests that arrive early wait
  for the gap to fill; anything else ends the session with item-not-found (§14.2, §14.3).
* Holding: at most 'hold' requests are kept, each at most 'wait' seconds; answers go out
  oldest first (§8). A request seen again before it was answered takes over (the earlier
  copy gets a recoverable error); one seen again after it was answered gets the same
  response again, from a buffer of the last 'requests' responses (§14.3).
* Two consecutive empty requests closer than 'polling' seconds, the first answered without
  payloads, are too frequent: policy-violation (§11, §12).
* pause answers everything at once and stretches the inactivity limit once (§10);
  terminate forwards its payloads, then closes the stream (§13).
* A session with no request open for 'inactivity' seconds is over (§10). Stanzas never
  delivered are handed back as XEP-0206 §7 says (xmppd.bosh.handback).
"""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.words.xish.domish import Element

from xmppd.bosh import wire
from xmppd.bosh.handback import hand_back
from xmppd.bosh.request import Exchange, Request, Service, Terms
from xmppd.bosh.stream import TERMINATE, BoshC2S, BoshTransport
from xmppd.context import ServerContext
from xmppd.errors import StreamError
from xmppd.logs import Logger

_LEGACY_STATUS = {"bad-request": 400, "policy-violation": 403, "item-not-found": 404}
OPEN, CLOSING, ENDED = "open", "closing", "ended"


class BoshSession:
    log = Logger()

    def __init__(self, service: Service, server: ServerContext, sid: str, terms: Terms,
                 secure: bool, content_type: str, ver: str, legacy: bool,
                 version: str) -> None:
        self.service = service
        self.server = server
        self.clock = self.server.clock
        self.sid = sid
        self.terms = terms
        self.secure = secure
        self.content_type = content_type
        self.ver = ver  # the BOSH version both sides speak (§7.2)
        self.legacy = legacy  # no 'ver' from the client: HTTP error codes (§17.1)
        self.version = version  # the client's xmpp:version, for restarts
        self.state = OPEN
        self.c2s: BoshC2S | None = None
        self.next_rid = 0
        self.held: deque[Request] = deque()  # processed, not answered (rid order)
        self.early: dict[int, Request] = {}  # arrived before a lower rid (§14.2)
        self.outbox: list[tuple[bytes, str | None]] = []  # (data, stanza name or None)
        self.outbox_bytes = 0
        # Past this, the outbox goes out even with a request whose client has gone (into
        # the replay buffer): a client that sends requests and drops them does not make
        # the server keep everything for it.
        self.outbox_limit = 4 * server.config.limits.max_stanza_size
        self.replay: dict[int, bytes] = {}  # rid -> response (§14.3), insertion = rid order
        self.final: bytes | None = None  # the terminal body, until a request takes it
        self._pause: int | None = None
        self._paused = False  # the C2S queue is full: take no more payloads for now
        self._last_empty: Request | None = None
        self._idle: IDelayedCall | None = None
        self._flush_call: IDelayedCall | None = None

    @property
    def hold(self) -> int:
        return 0 if self.terms.wait == 0 else self.terms.hold  # wait 0: a polling session

    # -- the first request (§7) -------------------------------------------------------------
    def start(self, c2s: BoshC2S, transport: BoshTransport, first: Request,
              exchange: Exchange, stream_attrs: dict[str, str]) -> None:
        self.c2s = c2s
        self.next_rid = first.rid + 1
        self._attach(first, exchange)
        self._hold_request(first)
        c2s.makeConnection(transport)  # may already refuse (too many unauthenticated)
        if self.state == OPEN:
            try:
                c2s.open_stream(stream_attrs)
            except StreamError as err:
                c2s.stream_error(err)
        if self.state == OPEN:
            self._forward(wire.payloads(first.body))
        self._settle()

    def creation_attrs(self) -> dict[str, str]:
        """§7.2 and XEP-0206 §4: the session's terms, sent once."""
        t, c2s = self.terms, self.c2s
        header = c2s.header if c2s is not None else {}
        attrs = {"sid": self.sid, "wait": str(t.wait), "requests": str(t.requests),
                 "hold": str(t.hold), "inactivity": str(t.inactivity),
                 "polling": str(t.polling), "ver": self.ver}
        if t.maxpause:
            attrs["maxpause"] = str(t.maxpause)
        if header.get("from"):
            attrs["from"] = header["from"]
        if header.get("id"):
            attrs["authid"] = header["id"]  # XEP-0206 §4 (deprecated, for old clients)
        attrs["xmpp:version"] = header.get("version", "1.0")
        attrs["xmpp:restartlogic"] = "true"
        return attrs

    # -- later requests (§8, §14) ---------------------------------------------------------------
    def receive(self, rid: int, body: Element, size: int, exchange: Exchange) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if self.state != OPEN:
            self._hand_final(exchange)
            return
        self._pause = None  # §10: back to normal on the next request
        if self.c2s is not None:
            self.c2s.last_active = self.clock.seconds()
        cached = self.replay.get(rid)
        if cached is not None:  # §14.3: the same response again
            exchange.respond(cached, self.content_type)
            self._arm_idle()
            return
        seen = self._unanswered(rid)
        if seen is not None:  # §14.3: the earlier copy gets a recoverable error
            if seen.exchange is not None:
                seen.exchange.on_lost = None
                seen.exchange.respond(wire.recoverable(), self.content_type)
            self._attach(seen, exchange)
            return
        try:
            pause = wire.integer(wire.attribute(body, "pause"), 65535)
        except ValueError:
            self.fail(exchange, "bad-request")
            return
        if pause is not None and not self.terms.maxpause:
            self.fail(exchange, "bad-request")  # §10: no 'maxpause' was offered
            return
        ending = pause is not None or wire.attribute(body, "type") == "terminate"
        window = self.terms.requests + (1 if ending else 0)
        if not self.next_rid <= rid < self.next_rid + window:
            # §14.2 (beyond the window) and §14.3 (answered, no longer buffered): the
            # same error either way, so that it tells an attacker nothing.
            self.fail(exchange, "item-not-found")
            return
        req = Request(rid, None, body, size, self.clock.seconds(), pause=pause)
        self._attach(req, exchange)
        self.early[rid] = req
        self._advance()

    def _unanswered(self, rid: int) -> Request | None:
        if rid in self.early:
            return self.early[rid]
        return next((r for r in self.held if r.rid == rid), None)

    def _attach(self, req: Request, exchange: Exchange) -> None:
        req.exchange = exchange
        exchange.on_lost = self._lost

    def _lost(self, exchange: Exchange) -> None:
        """The client went away from a request before it was answered: the rid stays
        taken (a copy of the request may come again, §14.3), nothing is sent to it."""
        for r in (*self.held, *self.early.values()):
            if r.exchange is exchange:
                r.exchange = None

    def _advance(self) -> None:
        while self.state == OPEN and not self._paused:
            req = self.early.pop(self.next_rid, None)
            if req is None:
                break
            self.next_rid += 1
            self._process(req)
        self._settle()

    def _process(self, req: Request) -> None:
        """One request's turn, in rid order (§14.2)."""
        c2s = self.c2s
        assert c2s is not None
        body = req.body
        items = wire.payloads(body)
        terminate = wire.attribute(body, "type") == "terminate"
        restart = wire.attribute(body, "restart", wire.NS_XBOSH) in ("true", "1")
        req.empty = not items and not terminate and not restart and req.pause is None
        req.terminate = terminate
        if req.pause is not None and req.pause > self.terms.maxpause:
            self.fail(req.exchange, "policy-violation")  # §10: longer than 'maxpause'
            return
        if self._too_frequent(req):
            self.fail(req.exchange, "policy-violation")
            return
        self._hold_request(req)
        if req.size > c2s.stanza_limit() + wire.BODY_SLACK:
            # As a stanza over budget on TCP (RFC 6120 §13.12): a stream error.
            c2s.stream_error(StreamError("policy-violation", "request body too large"))
            return
        if restart:
            if items or not c2s.restart_expected:
                # XEP-0206 §5: a restart body is empty, and follows SASL success.
                self.fail(req.exchange, "bad-request")
                return
            self._restart(body)
        elif items and c2s.restart_expected:
            # RFC 6120 §6.4.6: after SASL success the stream restarts before anything else
            # (on TCP, an element instead of the new header is a stream error too).
            self.fail(req.exchange, "bad-request")
            return
        self._forward(items)
        if terminate and self.state == OPEN:
            c2s.element_received(TERMINATE)  # after the payloads (§13)
        if req.pause is not None and self.state == OPEN:
            self._pause = req.pause
            while self.held:  # §10: everything at once; the pause response stays empty
                oldest = self.held[0]
                self._answer(oldest, payload=oldest is not req)

    def _too_frequent(self, req: Request) -> bool:
        """§11/§12: two consecutive empty requests within 'polling' seconds, the first one
        not answered with payloads (unless its client is gone: a reloaded page)."""
        prev, self._last_empty = self._last_empty, (req if req.empty else None)
        if not req.empty or prev is None:
            return False
        return (req.arrived - prev.arrived < self.terms.polling and not prev.delivered
                and prev.exchange is not None)

    def _restart(self, body: Element) -> None:
        """XEP-0206 §5: a new stream on the same session, as after a TCP stream restart."""
        c2s = self.c2s
        assert c2s is not None
        c2s.restart_expected = False
        attrs = {"to": wire.attribute(body, "to") or c2s.host, "version": self.version}
        lang = wire.attribute(body, "lang", "http://www.w3.org/XML/1998/namespace")
        if lang:
            attrs["xml:lang"] = lang
        try:
            c2s.open_stream(attrs)
        except StreamError as err:
            c2s.stream_error(err)

    def _forward(self, items: list[Element]) -> None:
        c2s = self.c2s
        assert c2s is not None
        for el in items:
            if self.state != OPEN or c2s.closing:
                return
            try:
                c2s.element_received(el)
            except StreamError as err:
                c2s.stream_error(err)

    # -- answering (§8) -----------------------------------------------------------------------
    def _hold_request(self, req: Request) -> None:
        self.held.append(req)
        if self.hold and self.terms.wait:
            req.timer = self.clock.callLater(self.terms.wait, self._expired, req)

    def _expired(self, req: Request) -> None:
        req.timer = None
        while self.state == OPEN and req in self.held:
            oldest = self.held[0]
            self._answer(oldest, payload=oldest.exchange is not None)
        self._settle()

    def output(self, data: bytes, stanza: str | None) -> None:
        """What the C2S writes; answered with the next response that can carry it."""
        if self.state != OPEN:
            # The session ended a moment ago and the C2S is about to hear of it: a stanza
            # routed to it meanwhile is handed back like the rest.
            if stanza is not None and self.c2s is not None:
                self.server.track(Deferred.fromCoroutine(
                    hand_back(self.server, self.c2s, [data])))
            return
        self.outbox.append((data, stanza))
        self.outbox_bytes += len(data)
        if self._flush_call is None:
            # The writes of one reactor turn (a burst of stanzas) share one response.
            self._flush_call = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        self._settle()

    def _settle(self) -> None:
        """Answer what can be answered: oldest first, payloads only to a request whose
        client is still there (unless the outbox is over its limit), never more than
        'hold' requests kept."""
        if self.state != OPEN:
            return
        held = self.held
        while held:
            oldest = held[0]
            # A terminate request is the one more allowed (§11): the requests before it
            # stay open for the acknowledgement, which goes to the oldest (§13).
            limit = self.hold + (1 if held[-1].terminate else 0)
            overflow = self.outbox_bytes > self.outbox_limit
            if self.outbox and (overflow or any(r.exchange is not None for r in held)):
                self._answer(oldest, payload=oldest.exchange is not None or overflow)
            elif len(held) > limit:
                self._answer(oldest, payload=False)
            else:
                break
        self._arm_idle()

    def _answer(self, req: Request, payload: bool) -> None:
        data = b""
        if payload and self.outbox:
            data = b"".join(d for d, _ in self.outbox)
            self.outbox.clear()
            self.outbox_bytes = 0
        body = wire.response(self.creation_attrs() if req.creation else None, data)
        self.held.remove(req)
        if req.timer is not None and req.timer.active():
            req.timer.cancel()
        req.timer = None
        req.delivered = bool(data)
        if req.pause is None:  # §14.3: pause responses are not kept
            self.replay[req.rid] = body
            while len(self.replay) > self.terms.requests:
                del self.replay[next(iter(self.replay))]
        if req.exchange is not None:
            req.exchange.on_lost = None
            req.exchange.respond(body, self.content_type)

    # -- pause/resume of the input (the C2S queue is full) ----------------------------------
    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._advance()

    # -- the end -----------------------------------------------------------------------------
    def _arm_idle(self) -> None:
        """§10: with no request open, the session lasts 'inactivity' seconds (or the pause
        the client asked for); requests waiting for a lower rid give it 'wait' more."""
        if self.state != OPEN or self.held or (self._idle is not None and self._idle.active()):
            return
        delay = self._pause if self._pause is not None else self.terms.inactivity
        if self.early:
            delay += self.terms.wait
        self._idle = self.clock.callLater(delay, self._inactive)

    def _inactive(self) -> None:
        self._idle = None
        if self.state != OPEN:
            return
        self.log.info("BOSH session {sid} of {peer} inactive: ended", sid=self.sid[:8],
                      peer=self.c2s.peer if self.c2s else "?")
        self._shut(wire.terminate("item-not-found"), clean=False)

    def fail(self, exchange: Exchange | None, condition: str) -> None:
        """A terminal binding condition caused by a request (§17.2): it gets the error,
        other open requests get other-request, and the session is over."""
        body = wire.terminate(condition)
        if exchange is not None:
            exchange.on_lost = None
            exchange.respond(body, self.content_type, self.status(condition))
        if self.state != OPEN:
            return
        self.log.info("BOSH session {sid} terminated: {cond}", sid=self.sid[:8], cond=condition)
        self._shut(wire.terminate("other-request"), clean=False)

    def status(self, condition: str) -> int:
        """§17.1: a legacy client (no 'ver') expects the deprecated HTTP error codes."""
        return _LEGACY_STATUS.get(condition, 200) if self.legacy else 200

    def stream_closed(self) -> None:
        """The C2S ended its stream: the client's terminate, a stream error, the server
        closing it. The oldest open request gets the terminal body (XEP-0206 §6: the
        stream error inside), or the next request that comes (§13)."""
        if self.state != OPEN:
            return
        c2s = self.c2s
        assert c2s is not None
        err = c2s.error
        if err is None:
            condition, others = None, wire.response()  # §13: the others get empty bodies
        else:
            condition = "system-shutdown" if err.condition == "system-shutdown" else (
                "remote-stream-error")
            others = wire.terminate("other-request")
        nonzas = b"".join(d for d, kind in self.outbox if kind is None)
        self.outbox = [(d, kind) for d, kind in self.outbox if kind is not None]
        final = wire.terminate(condition, nonzas)
        waiting = [r for r in (*self.held, *sorted(self.early.values(), key=lambda r: r.rid))
                   if r.exchange is not None]
        if waiting:
            for i, r in enumerate(waiting):
                r.exchange.respond(final if i == 0 else others,  # type: ignore[union-attr]
                                   self.content_type)
            self._shut(None, clean=c2s.clean_close)
            return
        self.final = final
        self._shut(None, clean=c2s.clean_close, keep=True)

    def _hand_final(self, exchange: Exchange) -> None:
        if self.final is not None and self.state == CLOSING:
            exchange.respond(self.final, self.content_type)
            self._end()
        else:
            exchange.respond(wire.terminate("item-not-found"), self.content_type,
                             self.status("item-not-found"))

    def _shut(self, others: bytes | None, clean: bool, keep: bool = False) -> None:
        """Stop everything; the C2S is told its connection is gone (its session ends as a
        TCP one would), undelivered stanzas are handed back."""
        self.state = CLOSING if keep else ENDED
        for r in (*self.held, *self.early.values()):
            if r.timer is not None and r.timer.active():
                r.timer.cancel()
            if others is not None and r.exchange is not None:
                r.exchange.on_lost = None
                r.exchange.respond(others, self.content_type)
        self.held.clear()
        self.early.clear()
        for call in (self._idle, self._flush_call):
            if call is not None and call.active():
                call.cancel()
        self._idle = self._flush_call = None
        if keep:
            self._idle = self.clock.callLater(self.terms.inactivity, self._end)
        else:
            self.service.forget(self)
        c2s, undelivered = self.c2s, [d for d, kind in self.outbox if kind is not None]
        self.outbox = []
        if c2s is None or c2s.closed:
            return
        if c2s.transport is not None:
            c2s.transport.disconnecting = True
        reason = Failure(ConnectionDone() if clean else ConnectionLost())
        if not undelivered:
            self.clock.callLater(0, _lose, c2s, reason)
            return
        # What it never delivered is stored (or bounced) before the session ends: the end
        # (the unavailable presence contacts get) comes after, and anything routed to it
        # meanwhile is handed back too (output()).
        d = Deferred.fromCoroutine(hand_back(self.server, c2s, undelivered))
        d.addBoth(lambda _: _lose(c2s, reason))
        self.server.track(d)

    def _end(self) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        self.final = None
        if self.state != ENDED:
            self.state = ENDED
            self.service.forget(self)


def _lose(c2s: BoshC2S, reason: Failure) -> None:
    if not c2s.closed:
        c2s.connectionLost(reason)
