"""XEP-0198 Stream Management: acks, resumption, and no loss when a stream dies.

Every stanza written to an SM-enabled session is kept until the client acknowledges it. A
stream that drops without a closing tag hibernates for ``resume_timeout`` seconds and can be
resumed (unacknowledged stanzas are sent again); a session that ends otherwise - timeout,
clean close, replacement - hands its unacknowledged messages to offline storage (never to the
archive again) or bounces them, so nothing is dropped and nothing is duplicated.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.words.xish.domish import Element

from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError, StreamError
from xmppd.jid import JID
from xmppd.plugin import Plugin
from xmppd.sessions import Session

NS = "urn:xmpp:sm:3"
MOD = 2 ** 32


@dataclass(frozen=True)
class Options:
    resume_timeout: float = 300.0  # seconds a dropped stream waits to be resumed
    max_resume_timeout: float = 3600.0  # the most a client may ask for with max=
    ack_delay: float = 1.0  # seconds after sending before the server asks for an ack
    max_unacked: int = 5000  # a client that never acks is disconnected beyond this


@dataclass
class SMState:
    session: Any
    resume_id: str | None
    timeout: float
    in_offset: int = 0  # stanzas handled by earlier streams of this session
    in_base: int = 0  # session.stanzas_in when SM was enabled on the current stream
    sent: int = 0  # stanzas sent (mod 2^32)
    acked: int = 0  # last h the client reported
    queue: deque[Element] = field(default_factory=deque)
    timer: IDelayedCall | None = None
    ack_timer: IDelayedCall | None = None

    def handled(self) -> int:
        return (self.in_offset + self.session.stanzas_in - self.in_base) % MOD


class StreamManagement(Plugin):
    name = "smacks"
    specs = ("XEP-0198 1.6.1",)
    Options = Options

    def setup(self) -> None:
        self.resumable: dict[str, SMState] = {}
        self.host.on(H.STREAM_FEATURES, self.features_)
        self.host.on(H.C2S_NONZA, self.nonza)
        self.host.on(H.STANZA_DELIVER, self.deliver, priority=-100)
        self.host.on(H.SESSION_INTERRUPTED, self.interrupted)
        self.host.on(H.SESSION_CLOSED, self.closed, priority=100)

    def teardown(self) -> None:
        for state in list(self.resumable.values()):
            for t in (state.timer, state.ack_timer):
                if t is not None and t.active():
                    t.cancel()

    def features_(self, ev: H.FeaturesEvent) -> None:
        if ev.stage == "post-auth" and getattr(ev.session, "stream_management", True):
            st.add(ev.features, "sm", NS)

    # -- nonzas ----------------------------------------------------------------------------------
    async def nonza(self, ev: H.NonzaEvent) -> bool:
        el, session = ev.element, ev.session
        if el.uri != NS:
            return False
        handler = {"enable": self.enable, "r": self.request, "a": self.answer,
                   "resume": self.resume}.get(el.name)
        if handler is None:
            return False
        if el.name in ("enable", "resume") and not getattr(session, "stream_management", True):
            # Not offered on this transport (BOSH recovers lost responses itself).
            self._failed(session, "feature-not-implemented")
            return True
        await handler(session, el)
        return True

    def _failed(self, session: Session, condition: str, h: int | None = None) -> None:
        attrs = {"h": str(h)} if h is not None else None
        failed = st.make("failed", NS, attrs)
        st.add(failed, condition, st.NS_STANZAS)
        session.send_raw(st.serialize(failed))

    async def enable(self, session: Session, el: Element) -> None:
        """§3: after binding, once per stream."""
        if session.jid is None or "sm" in session.data:
            self._failed(session, "unexpected-request")
            return
        resume = el.getAttribute("resume") in ("true", "1")
        timeout = self.options.resume_timeout
        if el.getAttribute("max"):
            try:
                timeout = max(0.0, min(float(el.getAttribute("max", "")),
                                       self.options.max_resume_timeout))
            except ValueError:
                self._failed(session, "bad-request")
                return
        rid = secrets.token_urlsafe(18) if resume else None
        state = SMState(session, rid, timeout, in_base=getattr(session, "stanzas_in", 0))
        session.data["sm"] = state
        attrs = {}
        if rid is not None:
            self.resumable[rid] = state
            attrs = {"id": rid, "resume": "true", "max": str(int(timeout))}
        session.send_raw(st.serialize(st.make("enabled", NS, attrs)))

    async def request(self, session: Session, el: Element) -> None:
        state: SMState | None = session.data.get("sm")
        if state is None:
            session.close(StreamError("unsupported-stanza-type", "stream management not enabled"))
            return
        session.send_raw(f"<a xmlns='{NS}' h='{state.handled()}'/>")

    async def answer(self, session: Session, el: Element) -> None:
        state: SMState | None = session.data.get("sm")
        if state is None:
            session.close(StreamError("unsupported-stanza-type", "stream management not enabled"))
            return
        self._ack(session, state, el.getAttribute("h"))

    def _ack(self, session: Session, state: SMState, h_attr: str | None) -> bool:
        """Drop acknowledged stanzas; an impossible h ends the stream (§4, §3.2)."""
        try:
            h = int(h_attr or "")
        except ValueError:
            session.close(StreamError("undefined-condition", "h is not a number"))
            return False
        newly = (h - state.acked) % MOD
        outstanding = (state.sent - state.acked) % MOD
        if h < 0 or h >= MOD or newly > outstanding:
            err = StreamError("undefined-condition", f"h={h} but only {state.sent} sent")
            session.close(err)
            return False
        for _ in range(newly):
            state.queue.popleft()
        state.acked = h
        return True

    # -- outbound counting ----------------------------------------------------------------------
    def deliver(self, ev: H.DeliverEvent) -> bool:
        state: SMState | None = ev.session.data.get("sm")
        if state is None or state.session is not ev.session:
            return False
        state.queue.append(ev.stanza)
        state.sent = (state.sent + 1) % MOD
        if len(state.queue) > self.options.max_unacked:
            ev.session.close(StreamError("policy-violation", "too many unacknowledged stanzas"))
        elif state.ack_timer is None or not state.ack_timer.active():
            state.ack_timer = self.host.clock.callLater(self.options.ack_delay, self._ask, state)
        return False

    def _ask(self, state: SMState) -> None:
        session = state.session
        if state.queue and not session.closed and state.session.data.get("sm") is state:
            session.send_raw(f"<r xmlns='{NS}'/>")

    # -- hibernation and resumption (§5) ---------------------------------------------------------
    def interrupted(self, ev: H.SessionEvent) -> bool:
        state: SMState | None = ev.session.data.get("sm")
        if state is None or state.resume_id is None or state.timeout <= 0:
            return False
        state.timer = self.host.clock.callLater(state.timeout, self._expire, state)
        self.log.info("{jid} hibernating for {t:.0f}s", jid=str(ev.session.jid), t=state.timeout)
        return True

    def _expire(self, state: SMState) -> None:
        state.timer = None
        if state.resume_id is not None:
            self.resumable.pop(state.resume_id, None)
        self.host.end_session(state.session, "resumption timeout")

    async def resume(self, session: Session, el: Element) -> None:
        rid = el.getAttribute("previd", "")
        state = self.resumable.get(rid)
        user = f"{getattr(session, 'username', '')}@{session.host}"
        old = state.session if state is not None else None
        if (state is None or old is None or old.jid is None or old.jid.bare_str != user
                or session.jid is not None or old.data.get("ended")):
            self._failed(session, "item-not-found")  # §5: unknown, expired or not yours
            return
        if not self._ack(old, state, el.getAttribute("h")):
            return
        if state.timer is not None and state.timer.active():
            state.timer.cancel()
        state.timer = None
        state.in_offset = state.handled()
        state.in_base = 0
        self.host.takeover(old, session)
        state.session = session
        session.send_raw(
            f"<resumed xmlns='{NS}' previd='{rid}' h='{state.in_offset}'/>")
        for stanza in list(state.queue):
            session.send_raw(st.serialize(stanza))
        if state.queue:
            state.ack_timer = self.host.clock.callLater(self.options.ack_delay, self._ask, state)
        self.log.info("{jid} resumed; {n} stanzas sent again", jid=str(session.jid),
                      n=len(state.queue))

    async def closed(self, ev: H.SessionEvent) -> None:
        """The session is over for good: what the client never acknowledged is not lost."""
        state: SMState | None = ev.session.data.get("sm")
        if state is None:
            return
        if state.resume_id is not None:
            self.resumable.pop(state.resume_id, None)
        for t in (state.timer, state.ack_timer):
            if t is not None and t.active():
                t.cancel()
        pending, state.queue = list(state.queue), deque()
        user = ev.session.jid.bare_str if ev.session.jid is not None else ""
        for stanza in pending:
            await self._rescue(stanza, user)

    async def _rescue(self, stanza: Element, user: str) -> None:
        """Unacknowledged message -> offline storage (not the archive); IQ -> error.

        Messages the server generated on the user's own behalf (archive results, carbons:
        'from' is the user's bare JID) are not conversation and are not kept."""
        frm = stanza.getAttribute("from") or ""
        if stanza.name == "message" and frm != user and stanza.getAttribute("type") not in (
                "error", "groupchat", "headline"):
            to = stanza.getAttribute("to")
            if to and frm:
                ev = H.StanzaEvent(stanza, JID.parse(frm), JID.parse(to).bare, None)
                if await self.host.hooks.fire(H.MESSAGE_UNDELIVERED, ev):
                    return
                await self.host.bounce(stanza, StanzaError("recipient-unavailable"))
        elif stanza.name == "iq" and stanza.getAttribute("type") in ("get", "set"):
            await self.host.bounce(stanza, StanzaError("recipient-unavailable"))
