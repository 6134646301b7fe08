"""XEP-0198 resumption on another cluster node: the plugin's side of cluster/handover.py
(the claimant's take-over, the owner's export, and what a session no stream took or a dead
node left becomes)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.words.xish.domish import Element

from plugins.smacks.state import NS, SMState
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StreamError
from xmppd.jid import JID
from xmppd.portable import export_session
from xmppd.sessions import Session
from xmppd.xmlparser import parse_fragment

if TYPE_CHECKING:
    from plugins.smacks import StreamManagement


async def resume_from(sm: StreamManagement, session: Session, el: Element, rid: str,
                      owner: str) -> None:
    """Take the session over from ``owner`` (step 3-4). From the state's arrival to the
    last stanza sent again nothing waits, so no stanza forwarded by the owner after the
    state can come first."""
    handover = sm.host.handover
    user = f"{getattr(session, 'username', '')}@{session.host}"
    moved = None
    if owner != handover.node:
        moved = await handover.fetch(owner, rid, sm.host.domain, user)
    if moved is None:
        if owner == handover.node:  # named us, yet not here (a run before a restart)
            handover.drop(rid)
        else:
            handover.release(rid, owner)
        sm._failed(session, "item-not-found")
        return
    if session.jid is not None or getattr(session, "closed", False):
        await late(sm, moved)  # the new stream is gone, or bound meanwhile
        sm._failed(session, "item-not-found")
        return
    sm.host.move_in(session, moved["session"])
    counts = moved["sm"]
    state = SMState(session, rid, float(counts["timeout"]), in_offset=int(counts["handled"]),
                    sent=int(counts["sent"]), acked=int(counts["acked"]),
                    queue=deque(parse_fragment(x) for x in counts["queue"]))
    session.data["sm"] = state
    sm.resumable[rid] = state
    handover.register(rid, session.jid)
    problem = sm._bad_h(state, el.getAttribute("h"))
    if problem is not None:  # §6, as in _resume: ends, unacknowledged -> offline
        sm.log.info("{jid} resumed with {problem}; session ended", jid=str(session.jid),
                    problem=problem)
        sm._failed(session, "undefined-condition", state.handled())
        sm.host.end_session(session, "resumed with a bad count")
        session.close(StreamError("undefined-condition", problem))
        return
    sm._acked(state, el.getAttribute("h"))
    sm.host.fire_sync(H.SESSION_RESUMED, H.SessionEvent(session))
    if state.queue:
        state.ack_timer = sm.host.clock.callLater(sm.options.ack_delay, sm._ask, state)
    sm.log.info("{jid} resumed from node {node}; {n} stanzas sent again",
                jid=str(session.jid), node=owner, n=len(state.queue))
    session.send_raw(st.serialize(st.make("resumed", NS, {"previd": rid,
                                                          "h": str(state.in_offset)})))
    sm._send_again(session, list(state.queue))


async def export(sm: StreamManagement, rid: str, user: str, node: str) -> dict[str, Any] | None:
    """Another node won the claim on ``rid``: hand the session over (step 3); None if it
    is not here (ended, or not ``user``'s)."""
    state = sm.resumable.get(rid)
    old = state.session if state is not None else None
    if (state is None or old is None or old.jid is None or old.jid.bare_str != user
            or old.data.get("ended") or rid in sm.resuming):
        return None
    sm.resuming.add(rid)
    try:
        await sm.host.settled(old)  # the 'h' it reports counts committed work only
    finally:
        sm.resuming.discard(rid)
    if sm.resumable.get(rid) is not state or old.data.get("ended"):
        return None
    # From here to the return nothing waits (see Handover._take).
    for t in (state.timer, state.ack_timer):
        if t is not None and t.active():
            t.cancel()
    state.timer = state.ack_timer = None
    del sm.resumable[rid]
    out = {"session": export_session(old),
           "sm": {"rid": rid, "timeout": state.timeout, "handled": state.handled(),
                  "sent": state.sent, "acked": state.acked,
                  "queue": [st.serialize(x) for x in state.queue]}}
    state.queue = deque()
    sm.host.handover.moved_out(rid)
    sm.host.move_out(old, node)
    sm.log.info("{jid} resumed on node {node}; session handed over", jid=str(old.jid),
                node=node)
    return out


async def late(sm: StreamManagement, moved: dict[str, Any]) -> None:
    """A session handed over that no stream took (the claimant gave up waiting, or the
    new stream went away): it ends as if its node were gone - contacts and rooms told by
    the resource's proxy here, and what it never got acknowledged to offline storage."""
    jid = JID.parse(moved["session"]["jid"])
    sm.log.info("{jid} handed over with nobody to resume it; ended", jid=str(jid))
    handover = sm.host.handover
    if handover is not None:
        handover.end_orphan(jid, moved["session"].get("token"))
        handover.drop(moved["sm"]["rid"])
    await rescue(sm, jid.bare_str, moved["sm"]["queue"])


async def rescue(sm: StreamManagement, user: str, xmls: list[str]) -> None:
    """Unacknowledged stanzas of a session that ended elsewhere (its node died, or
    nobody took it over): as ``closed`` does, all started at once, in order."""
    rescues = [Deferred.fromCoroutine(sm._rescue(parse_fragment(x), user)) for x in xmls]
    for outcome in await DeferredList(rescues, consumeErrors=True):
        if not outcome[0]:
            sm.log.failure("rescuing an unacknowledged stanza failed", outcome[1])
