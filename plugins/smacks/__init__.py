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
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.words.xish.domish import Element

from plugins.smacks import anywhere
from plugins.smacks.state import MOD, NS, Options, SMState, failure
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError, StreamError
from xmppd.jid import JID
from xmppd.plugin import Plugin
from xmppd.sessions import Session

__all__ = ["MOD", "NS", "Options", "SMState", "StreamManagement"]

class StreamManagement(Plugin):
    name = "smacks"
    specs = ("XEP-0198 1.6.1",)
    Options = Options
    live_options = True  # read when used: a reload may change them

    def setup(self) -> None:
        self.resumable: dict[str, SMState] = {}
        self.resuming: set[str] = set()  # previds a <resume/> (or a take-over) is settling
        self.host.on(H.SERVER_STARTED, self.started)
        self._provide()  # loaded into a running server (at start the cluster comes later)
        self.host.on(H.STREAM_FEATURES, self.features_)
        self.host.on(H.C2S_NONZA, self.nonza)
        self.host.on(H.STANZA_DELIVER, self.deliver, priority=-100)
        self.host.on(H.SESSION_INTERRUPTED, self.interrupted)
        self.host.on(H.SESSION_CLOSED, self.closed, priority=100)
        self.host.on(H.SASL2_FEATURES, self.sasl2_features)
        self.host.on(H.SASL2_SUCCESS, self.sasl2_success)
        self.host.on(H.BIND2_REQUEST, self.bind2)

    def _provide(self) -> Any:
        handover = self.host.handover
        if handover is not None:  # cluster: resumption on another node (cluster/handover.py)
            handover.provide(self.host.domain, self.export, self.late, self.rescue)
        return handover

    def started(self, _: None) -> None:
        handover = self._provide()
        if handover is not None:
            # what a previous run of this node left (killed, restarted before it was reaped)
            self.host.track(Deferred.fromCoroutine(handover.rescue_node(handover.node)))

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
        session.send_raw(st.serialize(failure(condition, h)))

    async def enable(self, session: Session, el: Element) -> None:
        """§3: after binding, once per stream."""
        if session.jid is None:
            self._failed(session, "unexpected-request")
            return
        session.send_raw(st.serialize(self._enable(session, el)))

    def _enable(self, session: Session, el: Element) -> Element:
        """Enable SM on the session; the <enabled/> (or <failed/>) to answer with."""
        if "sm" in session.data:
            return failure("unexpected-request")
        resume = el.getAttribute("resume") in ("true", "1")
        timeout = self.options.resume_timeout
        if el.getAttribute("max"):
            try:
                timeout = max(0.0, min(float(el.getAttribute("max", "")),
                                       self.options.max_resume_timeout))
            except ValueError:
                return failure("bad-request")
        rid = secrets.token_urlsafe(18) if resume else None
        state = SMState(session, rid, timeout, in_base=getattr(session, "stanzas_in", 0))
        session.data["sm"] = state
        attrs = {}
        if rid is not None:
            self.resumable[rid] = state
            if self.host.handover is not None:
                self.host.handover.register(rid, session.jid)
            attrs = {"id": rid, "resume": "true", "max": str(int(timeout))}
        return st.make("enabled", NS, attrs)

    # -- SASL2 and Bind 2 (XEP-0388, XEP-0386 §3.2) ------------------------------------------
    def sasl2_features(self, ev: H.Sasl2FeaturesEvent) -> None:
        st.add(ev.inline, "sm", NS)  # <resume/> inline in <authenticate/>
        st.add(ev.bind_inline, "feature", ev.bind_inline.uri, attrs={"var": NS})

    async def sasl2_success(self, ev: H.InlineEvent) -> bool:
        """A <resume/> in the SASL2 request: <resumed/> (or <failed/>) goes into <success/>,
        the unacknowledged stanzas after it."""
        el = st.child(ev.request, "resume", NS)
        if el is not None:
            await self._settle_old(el)
            answer, again = self._resume(ev.session, el)
            st.append(ev.response, answer)
            if again:
                ev.after.append(lambda: self._send_again(ev.session, again))
        return False

    async def bind2(self, ev: H.InlineEvent) -> bool:
        """<enable/> in a Bind 2 request: its <enabled/> goes into <bound/>."""
        el = st.child(ev.request, "enable", NS)
        if el is not None:
            st.append(ev.response, self._enable(ev.session, el))
        return False

    async def request(self, session: Session, el: Element) -> None:
        state: SMState | None = session.data.get("sm")
        if state is None:
            session.close(StreamError("unsupported-stanza-type", "stream management not enabled"))
            return
        # <a h/> tells the client it may forget those stanzas: only once what they depend on
        # (archive rows, offline copies, written behind) has committed. Counted first: the
        # stanzas handled up to this <r/>, whose writes were all issued before it.
        handled = state.handled()
        await self.host.settled(session)
        session.send_raw(f"<a xmlns='{NS}' h='{handled}'/>")

    async def answer(self, session: Session, el: Element) -> None:
        state: SMState | None = session.data.get("sm")
        if state is None:
            session.close(StreamError("unsupported-stanza-type", "stream management not enabled"))
            return
        self._ack(session, state, el.getAttribute("h"))

    def _ack(self, session: Session, state: SMState, h_attr: str | None) -> bool:
        """Drop acknowledged stanzas; an impossible h ends the stream (§4, §3.2)."""
        problem = self._bad_h(state, h_attr)
        if problem is not None:
            session.close(StreamError("undefined-condition", problem))
            return False
        self._acked(state, h_attr)
        return True

    @staticmethod
    def _bad_h(state: SMState, h_attr: str | None) -> str | None:
        """Why ``h_attr`` cannot acknowledge what ``state`` sent, or None if it can."""
        try:
            h = int(h_attr or "")
        except ValueError:
            return "h is not a number"
        newly = (h - state.acked) % MOD
        outstanding = (state.sent - state.acked) % MOD
        if h < 0 or h >= MOD or newly > outstanding:
            return f"h={h} but only {state.sent} sent"
        return None

    def _acked(self, state: SMState, h_attr: str | None) -> None:
        h = int(h_attr or "")
        count = (h - state.acked) % MOD
        for _ in range(count):
            state.queue.popleft()
        state.acked = h
        handover = self.host.handover
        if count and handover is not None and state.resume_id is not None:
            handover.mirror_trim(state.resume_id, count)

    # -- outbound counting ----------------------------------------------------------------------
    def deliver(self, ev: H.DeliverEvent) -> bool:
        state: SMState | None = ev.session.data.get("sm")
        if state is None or state.session is not ev.session:
            return False
        state.queue.append(ev.stanza)
        state.sent = (state.sent + 1) % MOD
        if state.resume_id is not None and self.host.handover is not None:
            # a copy outside this process: a node killed with the session loses nothing
            self.host.handover.mirror_push(state.resume_id, st.serialize(ev.stanza))
        if len(state.queue) > self.options.max_unacked:
            self._overflow(state)
        elif state.ack_timer is None or not state.ack_timer.active():
            state.ack_timer = self.host.clock.callLater(self.options.ack_delay, self._ask, state)
        return False

    def _overflow(self, state: SMState) -> None:
        """``max_unacked`` bounds what a client that does not acknowledge makes us keep, also
        while its session hibernates (a dropped client in busy rooms for up to
        ``max_resume_timeout``). Past it the session can no longer be resumed: a live stream
        gets <policy-violation/> and, having lost resumability, ends when it closes; a
        hibernating one (no stream to tell) ends now. Either way the unacknowledged
        messages go to offline storage (``closed``)."""
        self._forget(state)
        state.resume_id = None
        if state.timer is not None and state.timer.active():
            state.timer.cancel()
            state.timer = None
            self.log.info("{jid} hibernating with too many unacknowledged stanzas; ended",
                          jid=str(state.session.jid))
            self.host.end_session(state.session, "too many unacknowledged stanzas")
        else:
            state.session.close(StreamError("policy-violation", "too many unacknowledged stanzas"))

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
        self.host.fire_sync(H.SESSION_HIBERNATED,
                            H.HibernationEvent(ev.session, list(state.queue)))
        return True

    def _expire(self, state: SMState) -> None:
        state.timer = None
        self.host.end_session(state.session, "resumption timeout")

    def _forget(self, state: SMState) -> None:
        rid = state.resume_id
        if rid is not None and self.resumable.get(rid) is state:
            del self.resumable[rid]
            if self.host.handover is not None:
                self.host.handover.forget(rid)

    async def _settle_old(self, el: Element) -> None:
        """<resumed h/> tells the client what the server handled: the old stream's written
        behind rows commit first."""
        state = self.resumable.get(el.getAttribute("previd", ""))
        if state is not None:
            await self.host.settled(state.session)

    async def resume(self, session: Session, el: Element) -> None:
        rid = el.getAttribute("previd", "")
        if rid in self.resuming:  # another <resume/> of it is under way: §5, one wins
            self._failed(session, "item-not-found")
            return
        handover = self.host.handover
        if handover is not None:
            # Cluster: the session may be on another node, and a <resume/> on another node
            # may race this one; the claim decides (cluster/handover.py step 2).
            owner = await handover.claim(rid)
            if owner == "" and rid in self.resumable:
                owner = handover.node  # Redis forgot it; it is here all the same
            if not owner:
                if owner == "":
                    handover.drop(rid)  # the claim made for nothing
                self._failed(session, "item-not-found")
                return
            if owner != handover.node or rid not in self.resumable:
                await self._resume_from(session, el, rid, owner)
                return
        self.resuming.add(rid)
        try:
            await self._settle_old(el)
        finally:
            self.resuming.discard(rid)
        answer, again = self._resume(session, el)
        if handover is not None and rid in self.resumable:
            handover.register(rid, self.resumable[rid].session.jid)  # ours again
        session.send_raw(st.serialize(answer))
        self._send_again(session, again)

    # -- resumption on another cluster node (plugins/smacks/anywhere.py) -------------------------
    async def _resume_from(self, session: Session, el: Element, rid: str, owner: str) -> None:
        await anywhere.resume_from(self, session, el, rid, owner)

    async def export(self, rid: str, user: str, node: str) -> dict[str, Any] | None:
        return await anywhere.export(self, rid, user, node)

    async def late(self, moved: dict[str, Any]) -> None:
        await anywhere.late(self, moved)

    async def rescue(self, user: str, xmls: list[str]) -> None:
        await anywhere.rescue(self, user, xmls)

    def _send_again(self, session: Session, stanzas: list[Element]) -> None:
        """The stanzas the client never acknowledged, in the framing of the new stream (a
        WebSocket message declares its namespace, RFC 7395 §3.3.3)."""
        frame = getattr(session, "stanza_xml", st.serialize)
        for stanza in stanzas:
            session.send_raw(frame(stanza))

    def _resume(self, session: Session, el: Element) -> tuple[Element, list[Element]]:
        """§5: take over the hibernated session; (<resumed/> or <failed/>, what to send
        again)."""
        rid = el.getAttribute("previd", "")
        state = self.resumable.get(rid)
        user = f"{getattr(session, 'username', '')}@{session.host}"
        old = state.session if state is not None else None
        if (state is None or old is None or old.jid is None or old.jid.bare_str != user
                or session.jid is not None or old.data.get("ended")):
            return failure("item-not-found"), []  # §5: unknown, expired or not yours
        problem = self._bad_h(state, el.getAttribute("h"))
        if problem is not None:
            # §6: an error about <resume/> is a <failed/> on the stream that sent it (the old
            # connection is gone; closing it answered nobody and left the client waiting).
            # The session cannot continue with a count the client got wrong: it ends, and what
            # it never acknowledged goes to offline storage for the resource it binds next.
            self.log.info("{jid} resumed with {problem}; session ended", jid=str(old.jid),
                          problem=problem)
            answer = failure("undefined-condition", state.handled())
            self.host.end_session(old, "resumed with a bad count")
            old.close(StreamError("undefined-condition", problem))  # if it was still open
            return answer, []
        self._acked(state, el.getAttribute("h"))
        if state.timer is not None and state.timer.active():
            state.timer.cancel()
        state.timer = None
        state.in_offset = state.handled()
        state.in_base = 0
        self.host.takeover(old, session)
        state.session = session
        self.host.fire_sync(H.SESSION_RESUMED, H.SessionEvent(session))
        if state.queue:
            state.ack_timer = self.host.clock.callLater(self.options.ack_delay, self._ask, state)
        self.log.info("{jid} resumed; {n} stanzas sent again", jid=str(session.jid),
                      n=len(state.queue))
        resumed = st.make("resumed", NS, {"previd": rid, "h": str(state.in_offset)})
        return resumed, list(state.queue)

    async def closed(self, ev: H.SessionEvent) -> None:
        """The session is over for good: what the client never acknowledged is not lost."""
        state: SMState | None = ev.session.data.get("sm")
        if state is None:
            return
        self._forget(state)
        for t in (state.timer, state.ack_timer):
            if t is not None and t.active():
                t.cancel()
        pending, state.queue = list(state.queue), deque()
        user = ev.session.jid.bare_str if ev.session.jid is not None else ""
        # Every rescue starts now, in order, before this handler first waits: each reaches
        # offline storage's ordered writer (storage/batch.py) before any message routed to
        # the user after it went offline can (awaiting them one by one let new messages
        # interleave with the rescued ones under load).
        rescues = [Deferred.fromCoroutine(self._rescue(stanza, user)) for stanza in pending]
        for outcome in await DeferredList(rescues, consumeErrors=True):
            if not outcome[0]:
                self.log.failure("rescuing an unacknowledged stanza failed", outcome[1])

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
                try:
                    if await self.host.fire(H.MESSAGE_UNDELIVERED, ev):
                        return
                except StanzaError as err:
                    # Offline storage refused it (a no-store hint, a full queue): the sender
                    # gets that error, and the rest of the queue is still rescued.
                    await self.host.bounce(stanza, err)
                    return
                await self.host.bounce(stanza, StanzaError("recipient-unavailable"))
        elif stanza.name == "iq" and stanza.getAttribute("type") in ("get", "set"):
            await self.host.bounce(stanza, StanzaError("recipient-unavailable"))
