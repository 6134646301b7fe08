"""Room configuration (XEP-0045 §10.1.3, §10.2) as a value type, and the muc#roomconfig form.

``RoomConfig`` is what a room is; ``config_form`` renders it as the XEP-0004 form an owner
edits; ``parse_form`` validates a submitted form against the fields this service supports
(§15.5.3 registry). A field the service does not know is ``bad-request``; a value it cannot
accept (a list value that is not an option, a number out of range, a password-protected room
without a password) is ``not-acceptable`` (§10.1.3 "violate one or more service policies").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from twisted.words.xish.domish import Element

from plugins.muc import ns
from xmppd import forms
from xmppd.errors import StanzaError
from xmppd.jid import JID, JIDError

P = "muc#roomconfig_"
ROLES = ("moderator", "participant", "visitor")
WHOIS = ("moderators", "anyone")
ALLOW_PM = ("anyone", "participants", "moderators", "none")
MAX_USERS_CHOICES = (10, 20, 30, 50, 100, 200, 500, 1000, 2000, 5000)


@dataclass(frozen=True)
class Bounds:
    """Service limits a room configuration must stay within (plugin options)."""

    max_occupants: int
    max_history: int


@dataclass(frozen=True)
class RoomConfig:
    name: str = ""
    description: str = ""
    lang: str = ""
    persistent: bool = False
    public: bool = True
    members_only: bool = False
    moderated: bool = False
    password_protected: bool = False
    password: str = ""
    max_users: int = 200
    whois: str = "moderators"  # "anyone" = non-anonymous room (§10.1.3 note on _whois)
    change_subject: bool = False
    allow_invites: bool = False
    allow_pm: str = "anyone"
    history_length: int = 20  # muc#maxhistoryfetch
    logging: bool = False  # muc#roomconfig_enablelogging
    archiving: bool = True  # muc#roomconfig_enablearchiving (XEP-0313 on the room)
    presence_broadcast: frozenset[str] = field(default=frozenset(ROLES))
    member_list_roles: frozenset[str] = field(default=frozenset(ROLES))

    @property
    def non_anonymous(self) -> bool:
        return self.whois == "anyone"

    @property
    def logged(self) -> bool:
        """Discussions are kept where people outside the conversation can read them: public
        logging, or an archive that (XEP-0313 §6.1.2) anyone allowed to enter may query."""
        return self.logging or self.archiving

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["presence_broadcast"] = sorted(self.presence_broadcast)
        out["member_list_roles"] = sorted(self.member_list_roles)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], base: RoomConfig) -> RoomConfig:
        """A stored configuration; keys this version does not know are ignored, missing
        ones come from ``base`` (the service defaults)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("presence_broadcast", "member_list_roles"):
            if key in values:
                values[key] = frozenset(values[key])
        return dataclasses.replace(base, **values)


def config_form(cfg: RoomConfig, room: str, admins: list[str], owners: list[str],
                bounds: Bounds) -> Element:
    """The §10.1.3 / §10.2 configuration form with the current values."""
    form = forms.Form("form", title=f'Configuration for "{room}" Room')
    form.instructions.append("Complete this form to modify the configuration of your room.")
    form.add("FORM_TYPE", "hidden", ns.ROOMCONFIG)
    form.add(P + "roomname", "text-single", cfg.name, "Natural-Language Room Name")
    form.add(P + "roomdesc", "text-single", cfg.description, "Short Description of Room")
    form.add(P + "lang", "text-single", cfg.lang, "Natural Language for Room Discussions")
    _bool(form, "enablelogging", cfg.logging, "Enable Public Logging?")
    _bool(form, "enablearchiving", cfg.archiving, "Enable Message Archiving?")
    _bool(form, "changesubject", cfg.change_subject, "Allow Occupants to Change Subject?")
    _bool(form, "allowinvites", cfg.allow_invites, "Allow Members to Invite Others?")
    form.add(P + "allowpm", "list-single", cfg.allow_pm, "Who Can Send Private Messages?",
             options=[("Anyone", "anyone"), ("Anyone with Voice", "participants"),
                      ("Moderators Only", "moderators"), ("Nobody", "none")])
    choices = sorted({c for c in MAX_USERS_CHOICES if c <= bounds.max_occupants}
                     | {cfg.max_users, bounds.max_occupants})
    form.add(P + "maxusers", "list-single", str(cfg.max_users), "Maximum Number of Occupants",
             options=[(str(c), str(c)) for c in choices])
    form.add(P + "presencebroadcast", "list-multi", sorted(cfg.presence_broadcast),
             "Roles for which Presence is Broadcasted",
             options=[(r.capitalize(), r) for r in ROLES])
    form.add(P + "getmemberlist", "list-multi", sorted(cfg.member_list_roles),
             "Roles and Affiliations that May Retrieve Member List",
             options=[(r.capitalize(), r) for r in ROLES])
    _bool(form, "publicroom", cfg.public, "Make Room Publicly Searchable?")
    _bool(form, "persistentroom", cfg.persistent, "Make Room Persistent?")
    _bool(form, "moderatedroom", cfg.moderated, "Make Room Moderated?")
    _bool(form, "membersonly", cfg.members_only, "Make Room Members-Only?")
    _bool(form, "passwordprotectedroom", cfg.password_protected, "Password Required to Enter?")
    form.add(P + "roomsecret", "text-private", cfg.password, "Password")
    form.add(P + "whois", "list-single", cfg.whois, "Who May Discover Real JIDs?",
             options=[("Moderators Only", "moderators"), ("Anyone", "anyone")])
    form.add("muc#maxhistoryfetch", "text-single", str(cfg.history_length),
             f"Maximum Number of History Messages Returned by Room (0-{bounds.max_history})")
    form.add(P + "roomadmins", "jid-multi", admins, "Room Admins")
    form.add(P + "roomowners", "jid-multi", owners, "Room Owners")
    return form.to_element()


def _bool(form: forms.Form, name: str, value: bool, label: str) -> None:
    form.add(P + name, "boolean", "1" if value else "0", label)


@dataclass
class Submitted:
    """A validated submission: the new configuration and, when the form carried them, the
    complete lists of admins and owners (§10.1.3: "the full list", not a delta)."""

    config: RoomConfig
    admins: list[str] | None = None
    owners: list[str] | None = None


BOOLEANS = {"enablelogging": "logging", "enablearchiving": "archiving",
            "changesubject": "change_subject", "allowinvites": "allow_invites",
            "publicroom": "public", "persistentroom": "persistent",
            "moderatedroom": "moderated", "membersonly": "members_only",
            "passwordprotectedroom": "password_protected"}
TEXTS = {"roomname": "name", "roomdesc": "description", "lang": "lang",
         "roomsecret": "password"}
KNOWN = ({"FORM_TYPE", "muc#maxhistoryfetch"} | {P + k for k in BOOLEANS} | {P + k for k in TEXTS}
         | {P + k for k in ("allowpm", "maxusers", "presencebroadcast", "getmemberlist",
                            "whois", "roomadmins", "roomowners")})


def parse_form(form: forms.Form, current: RoomConfig, bounds: Bounds) -> Submitted:
    """Validate a submitted muc#roomconfig form; fields left out keep their value."""
    if form.type != "submit":
        raise StanzaError("bad-request", text="expected a data form of type submit")
    if form.form_type not in (None, ns.ROOMCONFIG):
        raise StanzaError("bad-request", text=f"FORM_TYPE must be {ns.ROOMCONFIG}")
    unknown = sorted(set(form.fields) - KNOWN)
    if unknown:
        raise StanzaError("bad-request", text=f"unknown field {unknown[0]}")
    changes: dict[str, Any] = {}
    for name, attr in BOOLEANS.items():
        f = form.fields.get(P + name)
        if f is not None:
            changes[attr] = f.boolean()
    for name, attr in TEXTS.items():
        f = form.fields.get(P + name)
        if f is not None:
            changes[attr] = (f.value or "").strip() if attr != "password" else f.value or ""
    for name, choices in (("allowpm", ALLOW_PM), ("whois", WHOIS)):
        value = form.value(P + name)
        if value is not None:
            if value not in choices:
                raise StanzaError("not-acceptable", text=f"{P}{name}: unsupported value")
            changes["allow_pm" if name == "allowpm" else "whois"] = value
    for name, attr in (("presencebroadcast", "presence_broadcast"),
                       ("getmemberlist", "member_list_roles")):
        f = form.fields.get(P + name)
        if f is not None:
            roles = {v.strip() for v in f.values if v.strip()}
            if not roles <= set(ROLES):
                raise StanzaError("not-acceptable", text=f"{P}{name}: unknown role")
            changes[attr] = frozenset(roles)
    maxusers = form.value(P + "maxusers")
    if maxusers is not None:
        changes["max_users"] = _number(P + "maxusers", maxusers, 1, bounds.max_occupants,
                                       none=bounds.max_occupants)
    history = form.value("muc#maxhistoryfetch")
    if history is not None:
        changes["history_length"] = _number("muc#maxhistoryfetch", history, 0,
                                            bounds.max_history)
    if changes.get("password") and P + "passwordprotectedroom" not in form.fields:
        changes["password_protected"] = True  # a password was set: the room requires it
    cfg = dataclasses.replace(current, **changes)
    if cfg.password_protected and not cfg.password:
        raise StanzaError("not-acceptable", text="a password-protected room needs a password")
    if not cfg.password_protected:
        cfg = dataclasses.replace(cfg, password="")
    out = Submitted(cfg)
    if P + "roomadmins" in form.fields:
        out.admins = _jids(form.fields[P + "roomadmins"])
    if P + "roomowners" in form.fields:
        out.owners = _jids(form.fields[P + "roomowners"])
        if not out.owners:
            raise StanzaError("not-acceptable", text="a room needs at least one owner")
    return out


def _number(var: str, value: str, low: int, high: int, none: int | None = None) -> int:
    value = value.strip()
    if value == "none" and none is not None:
        return none
    try:
        n = int(value)
    except ValueError:
        raise StanzaError("not-acceptable", text=f"{var}: not a number") from None
    if not low <= n <= high:
        raise StanzaError("not-acceptable", text=f"{var}: must be {low}..{high}")
    return n


def _jids(f: forms.Field) -> list[str]:
    out: list[str] = []
    for v in f.values:
        v = v.strip()
        if not v:
            continue
        try:
            out.append(JID.parse(v).bare_str)
        except JIDError:
            raise StanzaError("jid-malformed", text=f"{f.var}: {v!r} is not a JID") from None
    return sorted(set(out))
