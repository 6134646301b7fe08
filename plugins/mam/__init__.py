"""XEP-0313 Message Archive Management for user archives, with XEP-0359 stanza ids.

Every chat message a user sends (STANZA_OUTBOUND) or receives (STANZA_INBOUND) is archived
once per archive, after blocking and other filters ran, and before it is delivered; the
received copy carries the <stanza-id/> the archive knows it by. Queries page by that id.

A XEP-0424 retraction turns the retracted message into a tombstone in the archives of both
parties (retraction.py) before the retraction itself is archived and delivered.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from twisted.internet.task import LoopingCall
from twisted.words.xish.domish import Element

from plugins.hints import has_body, hint, message_type
from plugins.mam import query as mq
from plugins.mam import retraction as rt
from plugins.roster import Roster
from storage.archive import ArchiveRow
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.iq import IqRequest
from xmppd.jid import JID, JIDError
from xmppd.plugin import Plugin
from xmppd.timeutil import now_micros
from xmppd.usercache import UserCache
from xmppd.xmlparser import parse_fragment

NS_SID = "urn:xmpp:sid:0"
NS_PURGE = "urn:xmppd:mam:purge:0"  # delete-my-archive (no XEP defines one)
PREFS_STORE = "mam"


@dataclass(frozen=True)
class Options:
    default: Literal["always", "never", "roster"] = "always"  # users may change theirs
    retention_days: int = 0  # delete entries older than this; 0 keeps them forever
    max_page: int = 250  # largest page a query returns (RSM max is capped to it)


@dataclass
class Prefs:
    default: str
    always: set[str]
    never: set[str]


class Mam(Plugin):
    name = "mam"
    specs = ("XEP-0313 1.1.3", "XEP-0359 0.7.0", "XEP-0059 1.0.0", "XEP-0297 1.0",
             "XEP-0424 0.4.2 (tombstones in user archives)")
    # XEP-0424 §2: a server that archives retractions advertises the namespace; §4: and
    # tombstones (on the account, as in its Example 6).
    account_features = (mq.NS, mq.NS_EXTENDED, NS_SID, rt.NS, rt.NS_TOMBSTONE)
    Options = Options

    def setup(self) -> None:
        self.prefs_cache: UserCache[Prefs] = self.host.user_cache("mam-prefs")
        self.host.on(H.STANZA_OUTBOUND, self.sent, priority=-50)
        self.host.on(H.STANZA_INBOUND, self.received, priority=-50)
        self.host.iq("set", mq.NS, "query", self.query, scope="account")
        self.host.iq("get", mq.NS, "query", self.form, scope="account")
        self.host.iq("get", mq.NS, "metadata", self.metadata, scope="account")
        self.host.iq("get", mq.NS, "prefs", self.get_prefs, scope="account")
        self.host.iq("set", mq.NS, "prefs", self.set_prefs, scope="account")
        self.host.iq("set", NS_PURGE, "purge", self.purge, scope="account")
        self.host.on(H.SESSION_CLOSED, self.evict)
        self.host.on(H.BIND2_REQUEST, self.bind2)
        self.expiry: LoopingCall | None = None
        if self.options.retention_days > 0:
            self.expiry = LoopingCall(self.expire)
            self.expiry.clock = self.host.clock
            self.expiry.start(3600, now=True)

    def teardown(self) -> None:
        if self.expiry is not None and self.expiry.running:
            self.expiry.stop()

    def evict(self, ev: H.SessionEvent) -> None:
        jid = ev.session.jid
        if jid is not None and not self.host.sessions_of(jid.bare):
            self.prefs_cache.pop(jid.bare_str, None)

    # -- archiving --------------------------------------------------------------------------------
    @staticmethod
    def archivable(stanza: Element, retraction: bool = False) -> bool:
        """§5.1.1: messages of type chat/normal with a body (or a <store/> hint), and
        XEP-0424 retractions ("The archiving service therefore MUST store the retraction
        message", §5) even without their fallback body."""
        if stanza.name != "message" or message_type(stanza) not in ("chat", "normal"):
            return False
        if hint(stanza, "no-store") or hint(stanza, "no-permanent-store"):
            return False
        return retraction or has_body(stanza) or hint(stanza, "store")

    @staticmethod
    def retraction(stanza: Element) -> bool:
        """A XEP-0424 retraction of a one-to-one message (one child scan per message)."""
        return stanza.name == "message" and rt.retract_of(stanza) is not None and (
            message_type(stanza) in ("chat", "normal"))

    async def sent(self, ev: H.StanzaEvent) -> bool:
        s = ev.stanza
        retraction = self.retraction(s)
        if retraction:
            await self.retract(ev.from_.bare, ev.from_.bare, ev.to.bare, s)
        if self.archivable(s, retraction) and await self.wanted(ev.from_.bare, ev.to.bare):
            sid = self.append(ev.from_.bare, ev.to.bare, s, ev.origin)
            if ev.to.bare == ev.from_.bare:
                ev.extra["self_archived"] = sid  # a note to self: one entry, not two
        return False

    async def received(self, ev: H.StanzaEvent) -> bool:
        s = ev.stanza
        owner = ev.to.bare
        retraction = self.retraction(s)
        if retraction and "self_archived" not in ev.extra:
            await self.retract(owner, ev.from_.bare, ev.from_.bare, s)
        if not self.archivable(s, retraction):
            return False
        # XEP-0359 §3.1: a stanza-id claiming to be ours that we did not add is removed.
        s.children = [c for c in s.children if not (
            isinstance(c, Element) and c.name == "stanza-id" and c.uri == NS_SID
            and c.getAttribute("by") == owner.bare_str)]
        sid = ev.extra.get("self_archived")
        if sid is None:
            if not await self.wanted(owner, ev.from_.bare):
                return False
            sid = self.append(owner, ev.from_.bare, s, ev.origin)
        st.add(s, "stanza-id", NS_SID, attrs={"id": sid, "by": owner.bare_str})
        return False

    def append(self, owner: JID, with_: JID, stanza: Element, origin: object) -> str:
        """Archive a copy; its id at once (the XEP-0359 stanza-id is ours to make). The row
        is written behind (Host.write_behind): the stream goes on with its next stanzas while
        rows commit in order, many per transaction, and the sender's XEP-0198 acks wait for
        the commit. Waiting here made a stream handle one message per commit (372 msgs/s on
        one pipelined stream, issue 18)."""
        sid = secrets.token_urlsafe(12)
        d = self.host.storage.archive.append(ArchiveRow(
            owner.domain, owner.local, sid, with_.bare_str,
            now_micros(self.host.clock.seconds()), st.serialize(stanza),
            stanza.getAttribute("id")))
        d.addErrback(self._lost, owner)
        self.host.write_behind(origin, d)
        return sid

    def _lost(self, failure: Any, owner: JID) -> None:
        # The message itself was delivered or stored offline; only the archive misses it.
        self.log.failure("archiving a message of {owner} failed", failure, owner=str(owner))

    async def retract(self, owner: JID, author: JID, with_: JID, retraction: Element) -> None:
        """XEP-0424: replace the retracted message in ``owner``'s archive by a tombstone.
        §5.1: a one-to-one retraction names the message by its 'id'; §5: it "MUST only be
        processed when both the original message and the retraction request are received
        from the same bare-JID", so only a message ``author`` sent qualifies (the newest one,
        should the client have reused the id). Nothing else happens to someone else's
        message; the retraction is delivered and archived all the same (the recipient's
        client decides, §5). A tombstone needs the retraction's own 'id' (§4)."""
        target, rid = rt.target_id(retraction), retraction.getAttribute("id")
        if (target is None or not rid or not self.host.is_local(owner.domain)
                or owner.domain != self.host.domain):
            return
        archive = self.host.storage.archive
        for entry in await archive.by_message_id(owner.domain, owner.local, with_.bare_str,
                                                 target):
            original = parse_fragment(entry.stanza)
            if _bare(original.getAttribute("from")) != author.bare_str:
                continue
            if not rt.is_tombstone(original):
                stamp = now_micros(self.host.clock.seconds())
                await archive.replace(owner.domain, owner.local, entry.stanza_id,
                                      st.serialize(rt.tombstone(original, rid, stamp)))
            return

    # -- preferences (§6) -------------------------------------------------------------------------
    async def prefs(self, user: JID) -> Prefs:
        cached = self.prefs_cache.get(user.bare_str)
        if cached is not None:
            return cached
        raw = await self.host.storage.kv.get(user.domain, user.local, PREFS_STORE, "prefs")
        data = json.loads(raw) if raw else {}
        prefs = Prefs(data.get("default", self.options.default), set(data.get("always", [])),
                      set(data.get("never", [])))
        if self.host.sessions_of(user):
            self.prefs_cache[user.bare_str] = prefs
        return prefs

    async def wanted(self, owner: JID, other: JID) -> bool:
        if not self.host.is_local(owner.domain) or owner.domain != self.host.domain:
            return False
        prefs = await self.prefs(owner)
        peer = other.bare_str
        if peer in prefs.never:
            return False
        if peer in prefs.always or prefs.default == "always":
            return True
        if prefs.default == "roster":
            roster = self.host.optional(Roster)
            if roster is None:
                return False
            return peer in (await roster.load(owner)).items
        return False

    async def get_prefs(self, req: IqRequest) -> Element:
        self._own(req)
        return await self._prefs_element(req.account)

    async def set_prefs(self, req: IqRequest) -> Element:
        self._own(req)
        default = req.payload.getAttribute("default")
        if default not in ("always", "never", "roster"):
            raise StanzaError("bad-request", text="default must be always, never or roster")
        lists: dict[str, list[str]] = {}
        for name in ("always", "never"):
            el = st.child(req.payload, name, mq.NS)
            jids = []
            for j in st.children(el, "jid", mq.NS) if el is not None else ():
                try:
                    jids.append(JID.parse(st.text(j).strip()).bare_str)
                except JIDError:
                    raise StanzaError("jid-malformed") from None
            lists[name] = sorted(set(jids))
        user = req.account
        await self.host.storage.kv.set(user.domain, user.local, PREFS_STORE, "prefs",
                                       json.dumps({"default": default, **lists}))
        self.prefs_cache.pop(user.bare_str, None)
        self.prefs_cache.changed(user.bare_str)
        return await self._prefs_element(user)

    async def _prefs_element(self, user: JID) -> Element:
        prefs = await self.prefs(user)
        el = st.make("prefs", mq.NS, {"default": prefs.default})
        for name, jids in (("always", prefs.always), ("never", prefs.never)):
            lst = st.add(el, name, mq.NS)
            for j in sorted(jids):
                st.add(lst, "jid", mq.NS, j)
        return el

    # -- queries (§4) -----------------------------------------------------------------------------
    def _own(self, req: IqRequest) -> None:
        if not req.is_own_account:
            raise StanzaError("forbidden", text="only your own archive")

    def form(self, req: IqRequest) -> Element:
        self._own(req)
        return mq.query_form()

    async def query(self, req: IqRequest) -> Element:
        self._own(req)
        q, flip = mq.parse_query(req.payload, self.options.max_page)
        user = req.account

        async def deliver(out: Element) -> None:
            if req.origin is not None:
                req.origin.send(out)
            else:
                await self.host.send(out)

        return await mq.answer(self.host.storage.archive, user.domain, user.local, q, flip,
                               str(req.from_), user.bare_str,
                               req.payload.getAttribute("queryid"), deliver)

    async def bind2(self, ev: H.InlineEvent) -> bool:
        """XEP-0386 §3.2: <bound/> carries the archive's XEP-0313 metadata as of the bind,
        so the client knows where to synchronise from."""
        session = ev.session
        st.append(ev.response, await mq.metadata_element(
            self.host.storage.archive, session.host, getattr(session, "username", "")))
        return False

    async def metadata(self, req: IqRequest) -> Element:
        self._own(req)
        user = req.account
        return await mq.metadata_element(self.host.storage.archive, user.domain, user.local)

    async def purge(self, req: IqRequest) -> None:
        """Delete every entry of the user's own archive."""
        self._own(req)
        user = req.account
        await self.host.storage.archive.purge(user.domain, user.local)

    async def expire(self) -> None:
        cutoff = now_micros(self.host.clock.seconds() - self.options.retention_days * 86400)
        n = await self.host.storage.archive.expire(self.host.domain, cutoff)
        if n:
            self.log.info("archive retention removed {n} entries", n=n)


def _bare(jid: str | None) -> str | None:
    try:
        return JID.parse(jid).bare_str if jid else None
    except JIDError:
        return None
