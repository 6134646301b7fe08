"""Occupants and the room presence they are seen with (XEP-0045 §7.2.3, §17.2).

An occupant is one roomnick of one user (bare JID). With multi-session nicks (§7.2.9: "if
the bare JID of the present occupant matches the bare JID of the user seeking to enter the
room, then the service SHOULD allow entry") one occupant has several sessions (full JIDs);
in-room traffic goes to all of them, and the room shows the presence of the session that
spoke last (its ``primary``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.words.xish.domish import Element

from plugins.muc import ns
from xmppd import stanza as st
from xmppd.jid import JID

# What a client may not put into the presence the room reflects (§17.2.5: the service alone
# generates muc#user data; XEP-0421 §4: the room replaces any occupant-id).
_STRIP = frozenset(((ns.MUC, "x"), (ns.USER, "x"), (ns.OCCUPANT_ID, "occupant-id")))


@dataclass
class Occupant:
    nick: str  # as shown: the RFC 8266 enforced form (nicks.py)
    bare: JID
    role: str
    occupant_id: str
    key: str  # RFC 8266 comparison form of the nick: look-alikes share it (nicks.py)
    sessions: dict[JID, Element] = field(default_factory=dict)  # full JID -> presence
    primary: JID | None = None

    @property
    def jid(self) -> JID:
        """The real full JID shown to those who may see it (the primary session)."""
        assert self.primary is not None
        return self.primary

    def set_presence(self, full: JID, presence: Element) -> None:
        self.sessions[full] = clean_presence(presence)
        self.primary = full

    def drop(self, full: JID) -> bool:
        """Forget one session; True if the occupant has none left."""
        self.sessions.pop(full, None)
        if self.primary == full:
            self.primary = next(iter(self.sessions), None)
        return not self.sessions


def clean_presence(presence: Element) -> Element:
    """The client's presence minus addressing and what only the room may generate."""
    out = st.make("presence")
    if presence.getAttribute("type") == "unavailable":
        out.attributes["type"] = "unavailable"
    for c in presence.children:
        if isinstance(c, Element) and (c.uri, c.name) not in _STRIP and not (
                c.uri == st.NS_CLIENT and c.name == "error"):
            st.append(out, c)
    return out


@dataclass(frozen=True)
class ItemInfo:
    """What goes into <item/> and <x/> of one presence (§17.2 extended presence)."""

    affiliation: str
    role: str
    jid: str | None = None
    nick: str | None = None
    actor: str | None = None  # the actor's roomnick (§8.2, §9.1)
    reason: str | None = None
    codes: tuple[int, ...] = ()
    destroy: Element | None = None


def muc_user_x(info: ItemInfo) -> Element:
    x = st.make("x", ns.USER)
    attrs = {"affiliation": info.affiliation, "role": info.role}
    if info.jid is not None:
        attrs["jid"] = info.jid
    if info.nick is not None:
        attrs["nick"] = info.nick
    item = st.add(x, "item", ns.USER, attrs=attrs)
    if info.actor is not None:
        st.add(item, "actor", ns.USER, attrs={"nick": info.actor})
    if info.reason:
        st.add(item, "reason", ns.USER, info.reason)
    if info.destroy is not None:
        st.append(x, info.destroy)
    for code in sorted(set(info.codes)):
        st.add(x, "status", ns.USER, attrs={"code": str(code)})
    return x


def room_presence(base: Element | None, frm: str, info: ItemInfo,
                  occupant_id: str | None) -> Element:
    """A presence from an occupant JID: the occupant's own presence content, then the
    muc#user <x/> and the XEP-0421 <occupant-id/>."""
    p = st.make("presence", attrs={"from": frm})
    if base is not None:
        if base.getAttribute("type") == "unavailable":
            p.attributes["type"] = "unavailable"
        p.children = [c for c in base.children if isinstance(c, Element)]
    st.append(p, muc_user_x(info))
    if occupant_id is not None:
        st.add(p, "occupant-id", ns.OCCUPANT_ID, attrs={"id": occupant_id})
    return p


def unavailable(status: Element | None = None) -> Element:
    """A bare unavailable presence, with the occupant's exit message if it gave one."""
    p = st.make("presence", attrs={"type": "unavailable"})
    if status is not None:
        for c in st.children(status, "status", st.NS_CLIENT):
            st.append(p, c)
    return p
