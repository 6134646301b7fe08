"""Node configuration: the fields of the ``pubsub#node_config`` form this service supports
(XEP-0060 §8.2, §16.4.4), PEP's defaults (XEP-0163 §5), ``publish-options`` preconditions
(XEP-0060 §7.1.5, XEP-0223 §3) and the node meta-data form (XEP-0060 §5.4).

Defaults (XEP-0163 §5 "Recommended Defaults"): access model ``presence``, notifications with
payloads, the last item sent on subscription and presence, items persisted. ``max_items``
defaults to 1, since most PEP payloads (avatar metadata, nick, tune, OMEMO device list) are
singletons; a node that keeps more says so (``pubsub#max_items``, including ``max``).

The configured ``max_items`` is stored as given, also above the server's limit: the limit
applies when items are kept (``NodeConfig.limit``), so a client that asks for 10000 (as
XEP-0402 once suggested) can keep asking for it as a precondition without a conflict.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from twisted.words.xish.domish import Element

from plugins.pep import ns
from plugins.pep.ns import error
from xmppd import forms
from xmppd.errors import StanzaError

ACCESS_MODELS = ("open", "presence", "roster", "whitelist")
KNOWN_ACCESS_MODELS = (*ACCESS_MODELS, "authorize")
SEND_LAST = ("never", "on_sub", "on_sub_and_presence")
NOTIFICATION_TYPES = ("normal", "headline")
MAX = "max"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    title: str = ""
    description: str = ""
    type: str = ""  # pubsub#type: the payload's semantic type
    access_model: str = "presence"
    roster_groups_allowed: tuple[str, ...] = ()
    publish_model: str = "publishers"  # XEP-0163 §2.2: one publisher, the owner
    persist_items: bool = True
    max_items: int | str = 1  # a positive integer or "max"
    deliver_notifications: bool = True
    deliver_payloads: bool = True
    notify_config: bool = False
    notify_delete: bool = True
    notify_retract: bool = True
    send_last_published_item: str = "on_sub_and_presence"  # XEP-0163 §4.3.4
    notification_type: str = "headline"

    def limit(self, server_max: int) -> int:
        """Items actually kept: the configured number, at most the server's maximum."""
        if self.max_items == MAX:
            return server_max
        return min(int(self.max_items), server_max)

    def to_json(self) -> str:
        data = asdict(self)
        data["roster_groups_allowed"] = list(self.roster_groups_allowed)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> NodeConfig:
        """Read a stored configuration; keys this version does not know are ignored and
        missing ones take the defaults (configurations outlive code changes)."""
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        data: dict[str, Any] = {k: v for k, v in raw.items() if k in known}
        if "roster_groups_allowed" in data:
            data["roster_groups_allowed"] = tuple(data["roster_groups_allowed"])
        return cls(**data)


# Nodes whose contents are private by nature get private defaults when created without a
# configuration (or published to without publish-options): bookmarks must not become
# readable by contacts because an old client skipped publish-options (XEP-0223 §6, the
# concern behind CVE-2018-6591). The XEP-0402 node as XEP-0402 §3.2 asks clients to make it.
PRIVATE_DEFAULTS: dict[str, NodeConfig] = {
    ns.BOOKMARKS: NodeConfig(access_model="whitelist", max_items=MAX,
                             send_last_published_item="never"),
    ns.LEGACY_BOOKMARKS: NodeConfig(access_model="whitelist"),
}


def defaults(node: str) -> NodeConfig:
    """The configuration a node gets when created without one (XEP-0163 §5)."""
    return PRIVATE_DEFAULTS.get(node) or NodeConfig()


# var -> (attribute, kind, label). Kinds: text, bool, list (one of CHOICES[attribute]),
# multi (list-multi), count (positive integer or "max").
FIELDS: dict[str, tuple[str, str, str]] = {
    "pubsub#title": ("title", "text", "A friendly name for the node"),
    "pubsub#description": ("description", "text", "A description of the node"),
    "pubsub#type": ("type", "text", "The semantic type of the payloads"),
    "pubsub#access_model": ("access_model", "list", "Who may retrieve items"),
    "pubsub#roster_groups_allowed": ("roster_groups_allowed", "multi",
                                     "Roster groups allowed (access model roster)"),
    "pubsub#publish_model": ("publish_model", "list", "Who may publish"),
    "pubsub#persist_items": ("persist_items", "bool", "Persist items to storage"),
    "pubsub#max_items": ("max_items", "count",
                         "Max # of items to persist; `max` for the server's limit"),
    "pubsub#deliver_notifications": ("deliver_notifications", "bool",
                                     "Whether to deliver event notifications"),
    "pubsub#deliver_payloads": ("deliver_payloads", "bool",
                                "Whether to deliver payloads with event notifications"),
    "pubsub#notify_config": ("notify_config", "bool",
                             "Notify subscribers when the node configuration changes"),
    "pubsub#notify_delete": ("notify_delete", "bool",
                             "Notify subscribers when the node is deleted"),
    "pubsub#notify_retract": ("notify_retract", "bool",
                              "Notify subscribers when items are removed from the node"),
    "pubsub#send_last_published_item": ("send_last_published_item", "list",
                                        "When to send the last published item"),
    "pubsub#notification_type": ("notification_type", "list",
                                 "The message type of event notifications"),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "access_model": ACCESS_MODELS,
    "publish_model": ("publishers",),
    "send_last_published_item": SEND_LAST,
    "notification_type": NOTIFICATION_TYPES,
}
FORM_FIELD_TYPES = {"text": "text-single", "bool": "boolean", "list": "list-single",
                    "multi": "list-multi", "count": "text-single"}


def _value(attr: str, kind: str, field: forms.Field) -> Any:
    """One submitted value, typed; StanzaError not-acceptable when it cannot be used
    (XEP-0060 §8.2.5.2), with <unsupported-access-model/> for an unknown access model."""
    raw = field.values
    if kind == "multi":
        return tuple(dict.fromkeys(v for v in raw))
    value = (field.value or "").strip() if kind != "text" else (field.value or "")
    if kind == "bool":
        if value in ("1", "true"):
            return True
        if value in ("0", "false"):
            return False
        raise StanzaError("not-acceptable", text=f"{field.var}: not a boolean")
    if kind == "count":
        if value == MAX:
            return MAX
        if value.isdigit() and int(value) >= 1:
            return int(value)
        raise StanzaError("not-acceptable", text=f"{field.var}: a positive integer or 'max'")
    if kind == "list":
        if value not in CHOICES[attr]:
            if attr == "access_model":
                # §8.1.2: an access model this service does not offer
                raise error("not-acceptable", "unsupported-access-model",
                            text=f"access model {value!r} is not supported")
            raise StanzaError("not-acceptable", text=f"{field.var}: unsupported value")
        return value
    return value


def _submitted(form: forms.Form, form_type: str) -> forms.Form:
    if form.type != "submit":
        raise StanzaError("bad-request", text="a submitted data form (type 'submit') is needed")
    if form.form_type != form_type:
        raise StanzaError("bad-request", text=f"FORM_TYPE must be {form_type}")
    return form


def apply(config: NodeConfig, form: forms.Form) -> NodeConfig:
    """A configuration with the submitted ``pubsub#node_config`` fields changed (XEP-0060
    §8.2.4; fields not submitted keep their values, XEP-0004 §3.5). Unknown fields and
    unusable values are not-acceptable (§8.2.5.2)."""
    changes: dict[str, Any] = {}
    for var, field in _submitted(form, ns.NODE_CONFIG).fields.items():
        if var == "FORM_TYPE":
            continue
        spec = FIELDS.get(var)
        if spec is None:
            raise StanzaError("not-acceptable", text=f"unsupported configuration field {var}")
        changes[spec[0]] = _value(spec[0], spec[1], field)
    return replace(config, **changes)


def preconditions(form: forms.Form) -> dict[str, Any]:
    """The preconditions of a ``publish-options`` form (XEP-0060 §7.1.5): attribute -> value.
    An unknown field cannot be met, so it fails as a precondition (conflict)."""
    wanted: dict[str, Any] = {}
    for var, field in _submitted(form, ns.PUBLISH_OPTIONS).fields.items():
        if var == "FORM_TYPE":
            continue
        spec = FIELDS.get(var)
        if spec is None:
            raise precondition_not_met(f"unsupported publish option {var}")
        wanted[spec[0]] = _value(spec[0], spec[1], field)
    return wanted


def check(config: NodeConfig, wanted: dict[str, Any]) -> None:
    """§7.1.5 rule 1: an existing node whose configuration differs fails the publish."""
    for attr, value in wanted.items():
        current = getattr(config, attr)
        multi = attr == "roster_groups_allowed"
        if (set(current) != set(value)) if multi else current != value:
            var = next(v for v, spec in FIELDS.items() if spec[0] == attr)
            raise precondition_not_met(f"{var} is {_text(current)!r}, not {_text(value)!r}")


def precondition_not_met(text: str) -> StanzaError:
    return error("conflict", "precondition-not-met", text=text)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return " ".join(value)
    return str(value)


def form(config: NodeConfig, type_: str = "form", groups: Iterable[str] = ()) -> Element:
    """The ``pubsub#node_config`` form with the current values (§8.2.2, §8.3 defaults);
    ``groups`` are offered as options of roster_groups_allowed."""
    f = forms.Form(type_)
    f.add("FORM_TYPE", "hidden", ns.NODE_CONFIG)
    for var, (attr, kind, label) in FIELDS.items():
        value = getattr(config, attr)
        values = list(value) if kind == "multi" else [_text(value)]
        if kind == "text" and not value:
            values = []
        field = f.add(var, FORM_FIELD_TYPES[kind] if type_ == "form" else None, values,
                      label if type_ == "form" else None)
        if type_ == "form" and kind == "list":
            field.options = [(None, v) for v in CHOICES[attr]]
        if type_ == "form" and kind == "multi":
            field.options = [(None, g) for g in sorted(set(groups) | set(value))]
    return f.to_element()


def meta_data(config: NodeConfig, owner: str, created: str, publishers: Iterable[str] = ()
              ) -> Element:
    """XEP-0060 §5.4 node meta-data (a XEP-0128 extension of the node's disco#info)."""
    f = forms.Form("result")
    f.add("FORM_TYPE", "hidden", ns.META_DATA)
    f.add("pubsub#creator", "jid-single", owner)
    f.add("pubsub#creation_date", "text-single", created)
    f.add("pubsub#owner", "jid-multi", owner)
    f.add("pubsub#publisher", "jid-multi", sorted(set(publishers)) or [owner])
    for var in ("pubsub#title", "pubsub#description", "pubsub#type"):
        value = getattr(config, FIELDS[var][0])
        if value:
            f.add(var, "text-single", value)
    f.add("pubsub#access_model", "list-single", config.access_model)
    f.add("pubsub#publish_model", "list-single", config.publish_model)
    f.add("pubsub#max_items", "text-single", _text(config.max_items))
    return f.to_element()
