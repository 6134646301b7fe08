"""XEP-0160 offline messages: commit to storage, then deliver at the next available presence.

The message is committed before the MESSAGE_UNDELIVERED hook reports it taken, so the
sender's stream (and its XEP-0198 acknowledgement) only moves on once it is durable. At the
next non-negative available presence the queue is delivered in order with a XEP-0203 delay,
and each batch is deleted only after it was handed to the session.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.words.xish.domish import Element

from plugins.hints import chat_state_only, hint
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.jid import JID
from xmppd.plugin import Plugin
from xmppd.sessions import Session
from xmppd.timeutil import format_datetime, now_micros
from xmppd.xmlparser import parse_fragment

FEATURE = "msgoffline"


@dataclass(frozen=True)
class Options:
    quota: int = 1000  # messages kept per user; beyond it senders get service-unavailable


class Offline(Plugin):
    name = "offline"
    specs = ("XEP-0160 1.0.1", "XEP-0203 2.0")
    features = (FEATURE,)
    Options = Options
    live_options = True  # read when used: a reload may change them

    def setup(self) -> None:
        self._draining: set[str] = set()
        self._again: set[str] = set()  # got a message while their queue was being drained
        self.host.on(H.MESSAGE_UNDELIVERED, self.store, priority=-10)
        self.host.on(H.SESSION_AVAILABLE, self.drain)

    async def store(self, ev: H.StanzaEvent) -> bool:
        """Take a message nobody could receive (RFC 6121 §8.5.2.2.1, XEP-0160 §3).

        The row is written behind (Host.write_behind): the sender's stream goes on while it
        commits in order with others, and what tells the sender it is safe (XEP-0198 <a/>)
        waits for the commit. If it cannot be kept (quota, storage error) the sender gets
        the error back then: nothing is dropped silently."""
        s = ev.stanza
        if chat_state_only(s):
            return True  # XEP-0085 §5.5: chat states are not stored offline; nothing to keep
        if hint(s, "no-store"):
            raise StanzaError("service-unavailable", text="recipient offline; no-store hint")
        user = ev.to.bare
        d = self.host.storage.offline.store(
            user.domain, user.local, now_micros(self.host.clock.seconds()), st.serialize(s),
            self.options.quota)
        self.host.write_behind(ev.origin, d)
        d.addCallbacks(self._kept, self._not_kept, callbackArgs=(ev,), errbackArgs=(s,))
        return True

    def _kept(self, ok: bool, ev: H.StanzaEvent) -> None:
        if not ok:
            self._bounce(ev.stanza, StanzaError("service-unavailable",
                                                text="offline storage is full"))
            return
        self.host.track(Deferred.fromCoroutine(self._after_commit(ev)))

    def _not_kept(self, failure: Failure, stanza: Element) -> None:
        self.log.failure("storing an offline message failed", failure)
        self._bounce(stanza, StanzaError("internal-server-error",
                                         text="the message could not be stored"))

    def _bounce(self, stanza: Element, err: StanzaError) -> None:
        self.host.track(Deferred.fromCoroutine(self.host.bounce(stanza, err)))

    async def _after_commit(self, ev: H.StanzaEvent) -> None:
        """Tell MESSAGE_STORED_OFFLINE (push notifications) once the message is kept; its
        handlers' errors are logged, never sent to the sender of a message that is kept.
        The user may have come online while this was being committed (after the drain of
        their new session read the queue): deliver now rather than at the next login."""
        user = ev.to.bare
        try:
            await self.host.fire(H.MESSAGE_STORED_OFFLINE, ev)
        except Exception:
            self.log.failure("message-stored-offline handler raised")
        await self.host.refresh_sessions(user)  # on any node of a cluster
        ready = [x for x in self.host.available_sessions(user) if x.priority >= 0]
        if ready and user.bare_str in self._draining:
            # The running drain may have read the queue before this commit: it goes round
            # once more rather than leave the message until the next login.
            self._again.add(user.bare_str)
        elif ready:
            await self.drain(H.SessionEvent(ready[0]))

    async def drain(self, ev: H.SessionEvent) -> None:
        """XEP-0160 §3: deliver the queue to the resource that became available."""
        session = ev.session
        if session.jid is None:
            return
        user = session.jid.bare
        if user.bare_str in self._draining:
            return
        key = user.bare_str
        self._draining.add(key)
        try:
            while True:
                self._again.discard(key)
                await self._drain(session, user)
                if key not in self._again or session.data.get("ended"):
                    break
        finally:
            self._draining.discard(key)
            self._again.discard(key)

    async def _drain(self, session: Session, user: JID) -> None:
        while True:
            batch = await self.host.storage.offline.fetch(user.domain, user.local, 500)
            if not batch or session.data.get("ended"):
                return
            from_archive = bool(session.data.get("bind2"))
            for m in batch:
                el = parse_fragment(m.stanza)
                if from_archive and _archived(el, user.bare_str):
                    # XEP-0386 §3.2: a Bind 2 client synchronises from the archive (its
                    # <bound/> carried the metadata), so what the archive holds is cleared
                    # here without being sent; what it does not hold is still delivered.
                    continue
                st.stamp_delay(el, self.host.domain, format_datetime(m.created, True),
                               "Offline Storage")
                session.send(el)
            await self.host.storage.offline.remove(user.domain, user.local,
                                                   [m.id for m in batch])
            if len(batch) < 500:
                return


def _archived(stanza: Element, owner: str) -> bool:
    """The user's archive holds this message: its XEP-0359 stanza-id by the user's own bare
    JID was added when it was archived (plugins/mam)."""
    return any(c.getAttribute("by") == owner
               for c in st.children(stanza, "stanza-id", "urn:xmpp:sid:0"))
