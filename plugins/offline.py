"""XEP-0160 offline messages: commit to storage, then deliver at the next available presence.

The message is committed before the MESSAGE_UNDELIVERED hook reports it taken, so the
sender's stream (and its XEP-0198 acknowledgement) only moves on once it is durable. At the
next non-negative available presence the queue is delivered in order with a XEP-0203 delay,
and each batch is deleted only after it was handed to the session.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.words.xish.domish import Element

from plugins.hints import chat_state_only, hint
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.jid import JID
from xmppd.plugin import Plugin
from xmppd.sessions import Session
from xmppd.timeutil import format_datetime, now_micros
from xmppd.xmlstream import parse_fragment

FEATURE = "msgoffline"


@dataclass(frozen=True)
class Options:
    quota: int = 1000  # messages kept per user; beyond it senders get service-unavailable


class Offline(Plugin):
    name = "offline"
    specs = ("XEP-0160 1.0.1", "XEP-0203 2.0")
    features = (FEATURE,)
    Options = Options

    def setup(self) -> None:
        self._draining: set[str] = set()
        self.host.on(H.MESSAGE_UNDELIVERED, self.store, priority=-10)
        self.host.on(H.SESSION_AVAILABLE, self.drain)

    async def store(self, ev: H.StanzaEvent) -> bool:
        """Take a message nobody could receive (RFC 6121 §8.5.2.2.1, XEP-0160 §3)."""
        s = ev.stanza
        if chat_state_only(s):
            return True  # XEP-0085 §5.5: chat states are not stored offline; nothing to keep
        if hint(s, "no-store"):
            raise StanzaError("service-unavailable", text="recipient offline; no-store hint")
        user = ev.to.bare
        await self.keep(user, s)
        try:
            await self.host.hooks.fire(H.MESSAGE_STORED_OFFLINE, ev)  # push notifications
        except StanzaError:  # the message is kept: no error may reach its sender now
            self.log.failure("message-stored-offline handler raised")
        # The user may have come online while this was being committed (after the drain of
        # their new session read the queue): deliver now rather than at the next login.
        await self.host.refresh_sessions(user)  # on any node of a cluster
        ready = [x for x in self.host.available_sessions(user) if x.priority >= 0]
        if ready and user.bare_str not in self._draining:
            self.host.track(Deferred.fromCoroutine(self.drain(H.SessionEvent(ready[0]))))
        return True

    async def keep(self, user: JID, stanza: Element) -> None:
        """Commit one message to ``user``'s queue or raise service-unavailable (quota)."""
        ok = await self.host.storage.offline.store(
            user.domain, user.local, now_micros(self.host.clock.seconds()),
            st.serialize(stanza), self.options.quota)
        if not ok:
            raise StanzaError("service-unavailable", text="offline storage is full")

    async def drain(self, ev: H.SessionEvent) -> None:
        """XEP-0160 §3: deliver the queue to the resource that became available."""
        session = ev.session
        if session.jid is None:
            return
        user = session.jid.bare
        if user.bare_str in self._draining:
            return
        self._draining.add(user.bare_str)
        try:
            await self._drain(session, user)
        finally:
            self._draining.discard(user.bare_str)

    async def _drain(self, session: Session, user: JID) -> None:
        while True:
            batch = await self.host.storage.offline.fetch(user.domain, user.local, 500)
            if not batch or session.data.get("ended"):
                return
            for m in batch:
                el = parse_fragment(m.stanza)
                st.stamp_delay(el, self.host.domain, format_datetime(m.created, True),
                               "Offline Storage")
                session.send(el)
            await self.host.storage.offline.remove(user.domain, user.local,
                                                   [m.id for m in batch])
            if len(batch) < 500:
                return
