"""Configurations as XEP-0004 forms in XEP-0227 files: PEP node configurations as the
XEP-0060 §16.4.4 ``pubsub#node_config`` form (what Prosody writes), room configurations as
the XEP-0045 §10.1.3 / §15.5.3 ``muc#roomconfig`` form. The stored forms are JSON owned by
plugins/pep/config.py and plugins/muc/config.py; the mappings here cover every field those
define (tests/unit/test_pie_forms.py checks that they keep doing so).

A node configuration from another server is read leniently: a field without a value keeps
xmppd's default (Prosody lists every field, empty ones included), and a field or value xmppd
does not support is reported and left at the default. A room configuration is xmppd's own
format, so anything wrong in it is an error.
"""

from __future__ import annotations

import json
from typing import Any, Final

from twisted.words.xish.domish import Element

from plugins.muc.config import ALLOW_PM, ROLES, WHOIS
from plugins.pep.config import CHOICES, FIELDS, FORM_FIELD_TYPES, MAX, NodeConfig, defaults
from xmppd.errors import StanzaError
from xmppd.forms import Form
from xmppd.pie.model import PieError, Report, Where

NODE_CONFIG: Final = "http://jabber.org/protocol/pubsub#node_config"
ROOMCONFIG: Final = "http://jabber.org/protocol/muc#roomconfig"
P: Final = "muc#roomconfig_"

# var -> (RoomConfig attribute, kind, choices)
ROOM_FIELDS: Final[dict[str, tuple[str, str, tuple[str, ...]]]] = {
    P + "roomname": ("name", "text", ()),
    P + "roomdesc": ("description", "text", ()),
    P + "lang": ("lang", "text", ()),
    P + "persistentroom": ("persistent", "bool", ()),
    P + "publicroom": ("public", "bool", ()),
    P + "membersonly": ("members_only", "bool", ()),
    P + "moderatedroom": ("moderated", "bool", ()),
    P + "passwordprotectedroom": ("password_protected", "bool", ()),
    P + "roomsecret": ("password", "text", ()),
    P + "maxusers": ("max_users", "int", ()),
    P + "whois": ("whois", "list", WHOIS),
    P + "changesubject": ("change_subject", "bool", ()),
    P + "allowinvites": ("allow_invites", "bool", ()),
    P + "allowpm": ("allow_pm", "list", ALLOW_PM),
    "muc#maxhistoryfetch": ("history_length", "int", ()),
    P + "enablelogging": ("logging", "bool", ()),
    P + "enablearchiving": ("archiving", "bool", ()),
    P + "presencebroadcast": ("presence_broadcast", "multi", ROLES),
    P + "getmemberlist": ("member_list_roles", "multi", ROLES),
}
ROOM_TYPES: Final = {"text": "text-single", "bool": "boolean", "int": "text-single",
                     "list": "list-single", "multi": "list-multi"}


def _parse(el: Element, form_type: str, where: Where) -> Form:
    try:
        form = Form.parse(el)
    except StanzaError as exc:
        raise PieError(where, f"malformed data form: {exc.text or exc.condition}") from None
    if form.form_type != form_type:
        raise PieError(where, f"a {form_type} form was expected, not {form.form_type!r}")
    return form


def _bool(value: str) -> bool | None:
    return {"1": True, "true": True, "0": False, "false": False}.get(value.strip())


def _field_value(kind: str, value: Any, sort: bool = False) -> str | list[str]:
    """A stored setting as XEP-0004 field values: booleans as 1/0, lists as they are
    (sorted when the order means nothing), the rest as text."""
    if kind == "bool":
        return "1" if value else "0"
    if kind == "multi":
        return sorted(value) if sort else list(value)
    return str(value)


# -- PEP ---------------------------------------------------------------------------------------
def node_form(config_json: str) -> Element:
    cfg = NodeConfig.from_json(config_json)
    form = Form("submit")
    form.add("FORM_TYPE", "hidden", NODE_CONFIG)
    for var, (name, kind, _label) in FIELDS.items():
        form.add(var, FORM_FIELD_TYPES[kind], _field_value(kind, getattr(cfg, name)))
    return form.to_element()


def node_config(el: Element, node: str, where: Where, report: Report) -> str:
    """A node configuration (JSON, as plugins/pep stores it) from a submitted form."""
    form = _parse(el, NODE_CONFIG, where)
    changes: dict[str, Any] = {}
    for var, field in form.fields.items():
        if var == "FORM_TYPE" or not field.values:
            continue
        spec = FIELDS.get(var)
        if spec is None:
            report.note(where, f"PEP node {node}: configuration field {var} is not "
                        "supported by xmppd; ignored")
            continue
        name, kind, _label = spec
        value = _node_value(name, kind, field.values)
        if value is None:
            report.note(where, f"PEP node {node}: {var}={field.values!r} is not supported "
                        "by xmppd; the default is kept")
            continue
        changes[name] = value
    cfg = defaults(node)
    data = json.loads(cfg.to_json())
    data.update({k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()})
    return NodeConfig.from_json(json.dumps(data)).to_json()


def _node_value(name: str, kind: str, values: list[str]) -> Any:
    if kind == "multi":
        return tuple(dict.fromkeys(values))
    value = values[0] if kind == "text" else values[0].strip()
    if kind == "bool":
        return _bool(value)
    if kind == "count":
        if value == MAX:
            return MAX
        return int(value) if value.isdigit() and int(value) >= 1 else None
    if kind == "list":
        return value if value in CHOICES[name] else None
    return value


# -- MUC ---------------------------------------------------------------------------------------
def room_form(config: dict[str, Any]) -> Element:
    form = Form("submit")
    form.add("FORM_TYPE", "hidden", ROOMCONFIG)
    for var, (name, kind, _choices) in ROOM_FIELDS.items():
        if name not in config:
            continue
        form.add(var, ROOM_TYPES[kind], _field_value(kind, config[name], sort=True))
    return form.to_element()


def room_config(el: Element, room: str, where: Where, report: Report) -> dict[str, Any]:
    """The fields the form gives (the service's defaults apply to the others, as for any
    stored room: plugins/muc RoomConfig.from_json)."""
    form = _parse(el, ROOMCONFIG, where)
    out: dict[str, Any] = {}
    for var, field in form.fields.items():
        if var == "FORM_TYPE":
            continue
        spec = ROOM_FIELDS.get(var)
        if spec is None:
            report.note(where, f"room {room}: configuration field {var} is not supported by "
                        "xmppd; ignored")
            continue
        name, kind, choices = spec
        value: Any
        raw = field.values[0] if field.values else ""
        if kind == "multi":
            value = sorted(dict.fromkeys(field.values))
            bad = [v for v in value if v not in choices]
        elif kind == "bool":
            value = _bool(raw)
            bad = [] if value is not None else [raw]
        elif kind == "int":
            value = int(raw) if raw.strip().isdigit() else None
            bad = [] if value is not None else [raw]
        elif kind == "list":
            value = raw
            bad = [] if raw in choices else [raw]
        else:
            value, bad = raw, []
        if bad:
            raise PieError(where, f"room {room}: {var} cannot be {bad[0]!r}")
        out[name] = value
    if out.get("persistent") is False:
        raise PieError(where, f"room {room}: only persistent rooms are stored, and imported")
    return out
