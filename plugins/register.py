"""XEP-0077 In-Band Registration: create an account before authenticating (off by default),
change the password and cancel the account once authenticated; XEP-0445 invitation tokens.

Registration (§3.1) is served to unauthenticated streams through the IQ registry's
"preauth" scope and advertised with the ``iq-register`` stream feature after STARTTLS, only
when ``allow_registration`` is true; otherwise such requests get ``service-unavailable``
(§3.1: "If the host does not support In-Band Registration, it MUST return"). Both the legacy
fields (username, password) and a ``jabber:iq:register`` data form are accepted; the form
takes precedence (§4 rule 5). One stream registers at most one account (§3.1.1: a second
identity is ``not-acceptable``) and each IP address at most ``max_per_ip`` accounts per
``ip_period`` seconds (``resource-constraint``).

Invitations: with ``require_invite`` only holders of a token made by ``xmppd invite DOMAIN``
may register. The token is presented the XEP-0445 way (§5): ``<preauth
xmlns='urn:xmpp:pars:0' token='...'/>`` in an IQ set before registering, announced by the
``<register xmlns='urn:xmpp:ibr-token:0'/>`` stream feature; that is what the printed
``xmpp:DOMAIN?register;preauth=TOKEN`` URI makes clients do. Unknown, used-up or expired
tokens get ``item-not-found``; expiry is checked only there (XEP-0445 §5), a use is taken
only when the account is created and given back if creation fails.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from twisted.words.xish.domish import Element

from plugins.presence import Presence
from plugins.roster import Roster
from xmppd import forms
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.accounts import AccountError
from xmppd.errors import StanzaError
from xmppd.iq import IqRequest, Scope
from xmppd.jid import JID, JIDError, prepare_local
from xmppd.plugin import Plugin
from xmppd.sessions import Session

NS = "jabber:iq:register"
NS_FEATURE = "http://jabber.org/features/iq-register"
NS_TOKEN_FEATURE = "urn:xmpp:ibr-token:0"
NS_PARS = "urn:xmpp:pars:0"
FORM_CHANGE = "jabber:iq:register:changepassword"
MAX_USERNAME = 255  # characters; the accounts table's limit
TOKEN = "ibr_token"  # session.data: the accepted XEP-0445 token
DONE = "ibr_done"  # session.data: this stream registered an account


@dataclass(frozen=True)
class Options:
    allow_registration: bool = False  # in-band account creation (XEP-0077 §3.1)
    require_invite: bool = False  # ... only with an `xmppd invite` token (XEP-0445)
    max_per_ip: int = 5  # accounts one IP address may create per period
    ip_period: float = 3600.0  # seconds


class Register(Plugin):
    name = "register"
    specs = ("XEP-0077 2.5 (off by default; password change, cancellation)",
             "XEP-0445 0.2.0 (invitation tokens from `xmppd invite`)")
    features = (NS,)  # §8: also tells clients that password change works in-band
    Options = Options
    live_options = True  # read when used: a reload may change them

    def setup(self) -> None:
        self.created: dict[str, deque[float]] = {}  # IP address -> creation times
        self.removing: dict[str, int] = {}  # cancelled account -> sessions still closing
        self.host.iq("get", NS, "query", self.form, scope="preauth")
        self.host.iq("set", NS, "query", _secret(self.register), scope="preauth")
        self.host.iq("set", NS_PARS, "preauth", self.preauth, scope="preauth")
        scopes: tuple[Scope, ...] = ("host", "account")  # to the domain, or no 'to'
        for scope in scopes:
            self.host.iq("get", NS, "query", self.registered, scope=scope)
            self.host.iq("set", NS, "query", _secret(self.change), scope=scope)
        self.host.on(H.STREAM_FEATURES, self.stream_features)
        self.host.on(H.SESSION_CLOSED, self.closed, priority=-1000)  # after everyone else

    def stream_features(self, ev: H.FeaturesEvent) -> None:
        """§6 and XEP-0445 §3, only once the stream is encrypted (§10)."""
        if ev.stage == "pre-auth" and self.options.allow_registration:
            st.add(ev.features, "register", NS_FEATURE)
            st.add(ev.features, "register", NS_TOKEN_FEATURE)

    # -- before authentication ---------------------------------------------------------------
    def _enabled(self) -> None:
        if not self.options.allow_registration:
            raise StanzaError("service-unavailable", text="in-band registration is disabled")

    def form(self, req: IqRequest) -> Element:
        """§3.1: the fields to fill in (legacy and as a data form)."""
        self._enabled()
        text = "Choose a username and password to register with this server."
        if self.options.require_invite and not _data(req).get(TOKEN):
            text += " Registration needs an invitation token."
        q = st.make("query", NS)
        st.add(q, "instructions", NS, text)
        st.add(q, "username", NS)
        st.add(q, "password", NS)
        form = forms.Form("form", title="Account Registration", instructions=[text])
        form.add("FORM_TYPE", "hidden", NS)
        form.add("username", "text-single", label="Username", required=True)
        form.add("password", "text-private", label="Password", required=True)
        st.append(q, form.to_element())
        return q

    async def preauth(self, req: IqRequest) -> None:
        """XEP-0445 §5: accept a token for this stream's registration."""
        self._enabled()
        token = req.payload.getAttribute("token", "")
        if not token:
            raise StanzaError("bad-request", text="no token")
        invite = await self.host.storage.invites.get(self.host.domain, token)
        if invite is None or invite.uses < 1 or invite.expires <= self.host.clock.seconds():
            raise StanzaError("item-not-found", text="The provided token is invalid or expired")
        _data(req)[TOKEN] = token

    async def register(self, req: IqRequest) -> None:
        """§3.1: create the account."""
        self._enabled()
        data = _data(req)
        if st.child(req.payload, "remove", NS) is not None:
            raise StanzaError("unexpected-request", text="not registered")  # §3.2 table
        if data.get(DONE):
            raise StanzaError("not-acceptable", text="this stream already registered an account")
        token = data.get(TOKEN)
        if self.options.require_invite and not token:
            raise StanzaError("forbidden", text="registration needs an invitation")
        fields = _fields(req.payload, NS)
        username, password = fields.get("username", ""), fields.get("password", "")
        if not username or not password:
            raise StanzaError("not-acceptable", text="username and password are required")
        try:
            local = prepare_local(username)
        except JIDError as exc:
            raise StanzaError("not-acceptable", text=f"invalid username: {exc}") from None
        if len(local) > MAX_USERNAME:
            raise StanzaError("not-acceptable", text="username too long")
        ip = _ip(req.origin)
        if not self._may_create(ip):
            raise StanzaError("resource-constraint", text="too many registrations; try later")
        if token and not await self.host.storage.invites.take(self.host.domain, token):
            raise StanzaError("forbidden", text="the invitation is used up")
        try:
            if not await self.host.create_account(local, password):
                raise StanzaError("conflict", text="username taken")  # §3.1
        except (AccountError, StanzaError) as exc:
            if token:
                await self.host.storage.invites.give_back(self.host.domain, token)
            if isinstance(exc, StanzaError):
                raise
            raise StanzaError("not-acceptable", text=str(exc)) from None
        self.created.setdefault(ip, deque()).append(self.host.clock.seconds())
        data[DONE] = True
        data.pop(TOKEN, None)
        self.log.info("registered {user}@{host} from {ip}{how}", user=local,
                      host=self.host.domain, ip=ip, how=" with an invitation" if token else "")
        return None

    def _may_create(self, ip: str) -> bool:
        now = self.host.clock.seconds()
        times = self.created.get(ip)
        if times is not None:
            while times and now - times[0] >= self.options.ip_period:
                times.popleft()
            if not times:
                del self.created[ip]
                times = None
        if len(self.created) > 100000:  # forget idle addresses, keep memory bounded
            self.created = {k: v for k, v in self.created.items()
                            if v and now - v[-1] < self.options.ip_period}
        return times is None or len(times) < self.options.max_per_ip

    # -- authenticated ----------------------------------------------------------------------
    def registered(self, req: IqRequest) -> Element:
        """§3.1: an authenticated entity is told it is registered, with its username."""
        user = _own(req)
        q = st.make("query", NS)
        st.add(q, "registered", NS)
        st.add(q, "instructions", NS, "You are registered. Send a new password to change "
               "it, or <remove/> to delete your account and all of its data.")
        st.add(q, "username", NS, user.local)
        st.add(q, "password", NS)
        return q

    async def change(self, req: IqRequest) -> None:
        """§3.3 password change, or §3.2 cancellation with <remove/>."""
        user = _own(req)
        if st.child(req.payload, "remove", NS) is not None:
            if len(st.element_children(req.payload)) != 1:
                raise StanzaError("bad-request", text="<remove/> must be the only child")
            await self.cancel(req, user)
            return None
        fields = _fields(req.payload, FORM_CHANGE, NS)
        username, password = fields.get("username", ""), fields.get("password", "")
        if username:
            name = username.split("@", 1)[0] if "@" in username else username
            try:
                same = prepare_local(name) == user.local
            except JIDError:
                same = False
            if not same:
                raise StanzaError("not-acceptable", text="already registered as another user")
        if not password:
            # §3.3: an empty password never replaces the existing one.
            raise StanzaError("bad-request", text="a new password is required")
        old = fields.get("old_password")
        if old is not None and not await self.host.accounts.verify_plain(
                user.domain, user.local, old):
            raise StanzaError("not-authorized", text="the old password is wrong")
        try:
            changed = await self.host.accounts.set_password(user.domain, user.local, password)
        except AccountError as exc:
            raise StanzaError("not-acceptable", text=str(exc)) from None
        if not changed:
            raise StanzaError("registration-required")
        self.log.info("password changed for {user}", user=user.bare_str)
        return None

    async def cancel(self, req: IqRequest, user: JID) -> None:
        """§3.2: cancel the subscriptions, delete everything, acknowledge, then end every
        session with <not-authorized/>. The result is written after the deletion committed
        and before the stream error (a result after it could not be delivered)."""
        await self._cancel_subscriptions(user)
        await self.host.storage.accounts.delete(user.domain, user.local)
        if req.origin is not None:
            reply = st.result_for(req.stanza)
            if req.to is None:
                reply.attributes["from"] = user.bare_str
            req.origin.send(reply)
        sessions = [s for s in self.host.sessions_of(user) if not s.data.get("ended")]
        if sessions:
            self.removing[user.bare_str] = len(sessions)
        await self.host.delete_account(user)
        for session in sessions:
            # Unbind now: the router's own (second) result then finds no session, and a
            # stream-management plugin cannot keep a deleted account's session hibernated.
            self.host.end_session(session, "account removed")
        self.log.info("account {user} removed in-band", user=user.bare_str)

    async def closed(self, ev: H.SessionEvent) -> None:
        """Runs after every other SESSION_CLOSED handler: what they stored for a cancelled
        account while its sessions closed (a last-presence record, say) is deleted too."""
        jid = ev.session.jid
        left = None if jid is None else self.removing.get(jid.bare_str)
        if jid is None or left is None:
            return
        if left > 1:
            self.removing[jid.bare_str] = left - 1
        else:
            del self.removing[jid.bare_str]
        if not await self.host.storage.accounts.exists(jid.domain, jid.local):
            await self.host.storage.accounts.delete(jid.domain, jid.local)

    async def _cancel_subscriptions(self, user: JID) -> None:
        """§3.2: "SHOULD also cancel all existing presence subscriptions" (as RFC 6121 §2.5.2
        does for a removed roster item), with unavailable presence to those who saw us."""
        roster, presence = self.host.optional(Roster), self.host.optional(Presence)
        if roster is None or presence is None:
            return
        cached = await roster.load(user)
        frm = user.bare_str
        for contact in sorted(set(cached.items) | set(cached.pending)):
            state = cached.state(contact)
            if state.subscription in ("from", "both"):
                await presence.send_unavailable_from_all(user, JID.parse(contact))
            if state.subscription in ("to", "both") or state.pending_out:
                await presence.send_for_user(st.make("presence", attrs={
                    "type": "unsubscribe", "from": frm, "to": contact}))
            if state.subscription in ("from", "both") or state.pending_in:
                await presence.send_for_user(st.make("presence", attrs={
                    "type": "unsubscribed", "from": frm, "to": contact}))


def _secret(handler: Callable[[IqRequest], Awaitable[None]]
            ) -> Callable[[IqRequest], Awaitable[None]]:
    """XEP-0077 §3.3: an error must not echo the request back - it carries a password."""

    async def wrapped(req: IqRequest) -> None:
        try:
            await handler(req)
        except StanzaError as err:
            err.echo = False
            raise

    return wrapped


def _data(req: IqRequest) -> dict[str, Any]:
    if req.origin is None:
        raise StanzaError("bad-request")
    return req.origin.data


def _ip(session: Session | None) -> str:
    peer = getattr(session, "peer", "") or ""
    return peer.rsplit(":", 1)[0] if ":" in peer else peer


def _own(req: IqRequest) -> JID:
    """The requester's account, for IQs to the domain (§3.3 example) or to one's own account
    (no 'to', §3.2 scenario 1); another user's account, or a remote user, is forbidden."""
    if req.from_ is None:
        raise StanzaError("unexpected-request")  # §3.2/§3.3 tables: not registered
    if req.from_.domain != req.host.domain:
        # A user of another server (over federation) has no account here to change or
        # cancel: "the sender does not have sufficient permissions" (§3.2 table).
        raise StanzaError("forbidden", text="not an account of this server")
    if req.to is not None and req.to.local and req.to.bare != req.from_.bare:
        raise StanzaError("forbidden")
    return req.from_.bare


def _fields(query: Element, *form_types: str) -> dict[str, str]:
    """The submitted values: the data form if there is one (§4 rule 5), else the legacy
    elements; an empty element counts as not given."""
    x = st.child(query, "x", forms.NS)
    if x is not None:
        form = forms.Form.parse(x)
        if form.type != "submit" or (form.form_type or form_types[0]) not in form_types:
            raise StanzaError("bad-request", text="unexpected data form")
        return {var: f.value for var, f in form.fields.items()
                if var != "FORM_TYPE" and f.value}
    out: dict[str, str] = {}
    for child in st.element_children(query):
        if child.uri == NS and st.text(child):
            out[child.name] = st.text(child)
    return out
