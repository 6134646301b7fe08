"""XEP-0357 Push Notifications: tell a client's app server when a message waits for a device
that cannot hear it.

A client enables an app server (a JID and a node, with publish options such as a secret) for
its account (§5) and may disable it again (§6); registrations are stored per account. The
server then publishes a summary to the app server (§7) for a message that warrants one
(``notify.conversation``) when, as in Prosody's mod_cloud_notify:

* it is stored offline: no resource could take it (every registration of the account);
* it is written to a session that stream management keeps after its connection dropped
  (XEP-0198 §5), or that was unacknowledged when it dropped (the registration that session
  enabled);
* it is written to a session whose client said it is inactive (XEP-0352): the operating
  system may have frozen the app, so the bytes reach no one until it is woken;
* it was archived (XEP-0313) and delivered to the account's other resources while the device
  of a registration has no session at all: that device will fetch it from the archive.

Each registration hears of each message once. A registration is dropped when its app server
answers with an error, or after ``max_failures`` transient failures in a row (§7.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.words.xish.domish import Element

from plugins.push.notify import NS_PUSH, PUBLISH_OPTIONS, conversation
from plugins.push.sender import Publisher
from storage.push import NODE, PushRegistration
from xmppd import forms
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.iq import IqRequest
from xmppd.jid import JID, JIDError
from xmppd.plugin import Plugin
from xmppd.sessions import Session
from xmppd.timeutil import now_micros
from xmppd.usercache import UserCache

OWNED = "push"  # session.data: [service, node] of the registration this session enabled
HIBERNATING = "push_hibernating"  # session.data: kept by XEP-0198 after its connection died
PUSHED = "_xmppd_pushed"  # attribute of a stanza: registrations it was announced to
NS_SID = "urn:xmpp:sid:0"
NS_CSI = "urn:xmpp:csi:0"
MAX_OPTIONS = 8192  # characters of a serialized publish-options form


@dataclass(frozen=True)
class Options:
    include_sender: bool = False  # last-message-sender in notifications (§9: privacy)
    include_body: bool = False  # last-message-body in notifications
    placeholder_body: str = ""  # sent as the body when include_body is off ("" = none)
    inactive: bool = True  # also for connected sessions that said they are inactive
    max_registrations: int = 5  # per account; enabling more drops the oldest
    timeout: float = 30.0  # seconds to wait for the app server's answer
    max_failures: int = 5  # 'wait' errors or timeouts in a row before a registration goes


class Push(Plugin):
    name = "push"
    specs = ("XEP-0357 0.4.1 (offline, hibernated and inactive sessions)",)
    account_features = (NS_PUSH,)
    Options = Options

    def setup(self) -> None:
        self.host.share_session_flag(OWNED)  # cluster: whose registration has a session
        self.cache: UserCache[list[PushRegistration]] = self.host.user_cache("push")
        self.publisher = Publisher(self.host, self.log, self.options.timeout,
                                   self.options.max_failures, self._lookup, self._drop)
        self.host.iq("set", NS_PUSH, "enable", self.enable, scope="account")
        self.host.iq("set", NS_PUSH, "disable", self.disable, scope="account")
        self.host.on(H.MESSAGE_STORED_OFFLINE, self.stored_offline)
        if "mam" in self.host.config.enabled_plugins(self.host.domain):
            # Only an archive lets a device without a session fetch what others were given.
            self.host.on(H.MESSAGE_DELIVERED, self.delivered_elsewhere, priority=-20)
        self.host.on(H.STANZA_DELIVER, self.deliver, priority=50)
        self.host.on(H.SESSION_HIBERNATED, self.hibernated)
        self.host.on(H.SESSION_RESUMED, self.resumed)
        self.host.on(H.C2S_NONZA, self.client_state, priority=10)
        self.host.on(H.SESSION_CLOSED, self.closed)
        self.host.on(H.ACCOUNT_DELETED, self.account_deleted)

    # -- enabling and disabling (§5, §6) ----------------------------------------------------------
    def _own(self, req: IqRequest) -> Session:
        """Only the account itself, from one of its sessions, manages its app servers."""
        if not req.is_own_account or req.origin is None:
            raise StanzaError("forbidden", text="push notifications are managed by the account")
        return req.origin

    @staticmethod
    def _service(el: Element, user: JID) -> str:
        value = el.getAttribute("jid")
        if not value:
            raise StanzaError("bad-request", text="the 'jid' of the app server is required")
        try:
            service = JID.parse(value)
        except JIDError:
            raise StanzaError("jid-malformed", text="'jid' is not a valid JID") from None
        if service.bare == user.bare:
            raise StanzaError("bad-request", text="the app server cannot be the account itself")
        return str(service)

    @staticmethod
    def _publish_options(el: Element) -> str | None:
        """The §5 data form the app server wants back with each publish, checked."""
        found = list(st.children(el, "x", forms.NS))
        if not found:
            return None
        if len(found) > 1:
            raise StanzaError("bad-request", text="one publish-options form at most")
        form = forms.Form.parse(found[0])
        if form.type != "submit" or form.form_type != PUBLISH_OPTIONS:
            raise StanzaError("bad-request", text=f"expected a submitted form with FORM_TYPE "
                                                  f"{PUBLISH_OPTIONS}")
        xml = st.serialize(found[0])
        if len(xml) > MAX_OPTIONS:
            raise StanzaError("not-acceptable", text="the publish options are too large")
        return xml

    async def enable(self, req: IqRequest) -> None:
        session = self._own(req)
        user = req.account
        service = self._service(req.payload, user)
        node = req.payload.getAttribute("node")
        if not node:
            # 'node' is required: the §12 schema says so, and §5 has the client send the node
            # the app server provisioned; without one there is nothing to publish to.
            raise StanzaError("bad-request", text="the 'node' to publish to is required")
        if len(node) > NODE:
            raise StanzaError("not-acceptable", text=f"node longer than {NODE} characters")
        options = self._publish_options(req.payload)
        reg = PushRegistration(service, node, options, now_micros(self.host.clock.seconds()))
        dropped = await self.host.storage.push.enable(
            user.domain, user.local, reg, self.options.max_registrations)
        self._changed(user)
        self.publisher.forget(user, [r.key for r in dropped])
        session.data[OWNED] = [service, node]
        self.publisher.seen(user, service, node)
        self.log.info("{user} enabled push notifications via {service}", user=str(user),
                      service=service)

    async def disable(self, req: IqRequest) -> None:
        self._own(req)
        user = req.account
        service = self._service(req.payload, user)
        gone = await self.host.storage.push.disable(
            user.domain, user.local, service, req.payload.getAttribute("node"))
        if gone:
            self._forget(user, [r.key for r in gone])

    # -- registrations ------------------------------------------------------------------------
    async def registrations(self, user: JID) -> list[PushRegistration]:
        """Kept in memory while the account has sessions (a check per delivered message)."""
        cached = self.cache.get(user.bare_str)
        if cached is not None:
            return cached
        regs = await self.host.storage.push.get(user.domain, user.local)
        if self.host.sessions_of(user):
            self.cache[user.bare_str] = regs
        return regs

    async def _lookup(self, user: JID, key: tuple[str, str]) -> PushRegistration | None:
        return next((r for r in await self.registrations(user) if r.key == key), None)

    def _changed(self, user: JID) -> None:
        self.cache.pop(user.bare_str, None)
        self.cache.changed(user.bare_str)

    def _forget(self, user: JID, keys: list[tuple[str, str]]) -> None:
        self._changed(user)
        self.publisher.forget(user, keys)
        for s in self.host.sessions_of(user):
            owned = s.data.get(OWNED)
            if s.kind != "remote" and owned is not None and tuple(owned) in keys:
                s.data.pop(OWNED, None)

    async def _drop(self, user: JID, reg: PushRegistration, why: str) -> None:
        """§7.1: the app server refused: the registration is disabled."""
        await self.host.storage.push.disable(user.domain, user.local, reg.service, reg.node)
        self._forget(user, [reg.key])
        self.log.info("push notifications for {user} via {service} disabled: {why}",
                      user=user.bare_str, service=reg.service, why=why)

    # -- what is announced ----------------------------------------------------------------------
    def announce(self, user: JID, regs: list[PushRegistration],
                 messages: list[tuple[Element, Element]]) -> None:
        """Tell each registration about the (stanza, message) pairs it was not told of yet."""
        for reg in regs:
            new = []
            for stanza, msg in messages:
                told: set[tuple[str, str]] = stanza.__dict__.setdefault(PUSHED, set())
                if reg.key not in told:
                    told.add(reg.key)
                    new.append(msg)
            if new:
                last = new[-1]
                sender = last.getAttribute("from") if self.options.include_sender else None
                body = st.child_text(last, "body", st.NS_CLIENT) or None
                if not self.options.include_body:
                    body = self.options.placeholder_body or None
                self.publisher.announce(user, reg, len(new), sender, body)

    async def stored_offline(self, ev: H.StanzaEvent) -> None:
        msg = conversation(ev.stanza)
        if msg is not None:
            user = ev.to.bare
            self.announce(user, await self.registrations(user), [(ev.stanza, msg)])

    def delivered_elsewhere(self, ev: H.StanzaEvent) -> None:
        """Archived and delivered: registrations whose device has no session hear of it.
        (Not a coroutine: this runs for every message delivered, and mostly returns.)"""
        bare = ev.to.bare_str
        if self.cache.get(bare) == []:
            return  # the common case: no registrations
        for c in ev.stanza.children:
            if isinstance(c, Element) and c.name == "stanza-id" and c.uri == NS_SID and (
                    c.getAttribute("by") == bare):
                break
        else:
            return  # not in the archive
        msg = conversation(ev.stanza)
        if msg is not None:
            self.host.track(Deferred.fromCoroutine(self._unowned(ev.to.bare, ev.stanza, msg)))

    async def _unowned(self, user: JID, stanza: Element, msg: Element) -> None:
        try:
            regs = await self.registrations(user)
        except Exception:
            self.log.failure("could not read the push registrations of {user}",
                             user=user.bare_str)
            return
        owned = {tuple(s.data[OWNED]) for s in self.host.sessions_of(user) if s.data.get(OWNED)}
        self.announce(user, [r for r in regs if r.key not in owned], [(stanza, msg)])

    def deliver(self, ev: H.DeliverEvent) -> bool:
        """A message written to a session that is asleep (hibernating, or inactive)."""
        data = ev.session.data
        owned = data.get(OWNED)
        if owned is None or not (data.get(HIBERNATING) or (
                self.options.inactive and data.get("csi_inactive"))):
            return False
        msg = conversation(ev.stanza)
        if msg is not None and ev.session.jid is not None:
            self.host.track(Deferred.fromCoroutine(self._owned(
                ev.session.jid.bare, tuple(owned), [(ev.stanza, msg)])))
        return False

    async def _owned(self, user: JID, key: tuple[str, ...],
                     messages: list[tuple[Element, Element]]) -> None:
        try:
            reg = await self._lookup(user, (key[0], key[1]))
        except Exception:
            self.log.failure("could not read the push registrations of {user}",
                             user=user.bare_str)
            return
        if reg is not None:
            self.announce(user, [reg], messages)

    # -- when a device can hear again -------------------------------------------------------------
    def hibernated(self, ev: H.HibernationEvent) -> None:
        ev.session.data[HIBERNATING] = True
        owned = ev.session.data.get(OWNED)
        if owned is None or ev.session.jid is None:
            return
        messages = [(s, m) for s in ev.unacked if (m := conversation(s)) is not None]
        if messages:  # written before the connection died, never acknowledged
            self.host.track(Deferred.fromCoroutine(self._owned(
                ev.session.jid.bare, tuple(owned), messages)))

    def resumed(self, ev: H.SessionEvent) -> None:
        ev.session.data.pop(HIBERNATING, None)
        self._seen(ev.session)

    def client_state(self, ev: H.NonzaEvent) -> bool:
        if ev.element.uri == NS_CSI and ev.element.name == "active":
            self._seen(ev.session)
        return False  # the csi plugin handles it

    def _seen(self, session: Session) -> None:
        owned = session.data.get(OWNED)
        if owned is not None and session.jid is not None:
            self.publisher.seen(session.jid.bare, owned[0], owned[1])

    def closed(self, ev: H.SessionEvent) -> None:
        jid = ev.session.jid
        if jid is not None and not self.host.sessions_of(jid.bare):
            self.cache.pop(jid.bare_str, None)

    def account_deleted(self, ev: H.AccountEvent) -> None:
        self.cache.pop(ev.jid.bare_str, None)
        self.publisher.forget(ev.jid)
