"""Node configuration forms, PEP defaults and publish-options preconditions (XEP-0060 §8.2,
§7.1.5; XEP-0163 §5; XEP-0223)."""

from __future__ import annotations

import pytest

from plugins.pep import config as cfg
from plugins.pep.config import MAX, NodeConfig
from xmppd import forms
from xmppd.errors import StanzaError
from xmppd.xmlparser import parse_fragment

PUBSUB = "http://jabber.org/protocol/pubsub"


def submitted(form_type: str, *fields: tuple[str, list[str]], type_: str = "submit"
              ) -> forms.Form:
    body = "".join(f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values)
                   + "</field>" for var, values in fields)
    return forms.Form.parse(parse_fragment(
        f"<x xmlns='jabber:x:data' type='{type_}'><field var='FORM_TYPE' type='hidden'>"
        f"<value>{form_type}</value></field>{body}</x>"))


def app_condition(exc: StanzaError) -> str | None:
    return exc.app_condition.name if exc.app_condition is not None else None


def test_pep_defaults() -> None:
    c = NodeConfig()
    assert c.access_model == "presence"  # XEP-0163 §5
    assert c.deliver_notifications and c.deliver_payloads and c.persist_items
    assert c.send_last_published_item == "on_sub_and_presence"  # XEP-0163 §4.3.4
    assert c.max_items == 1
    # bookmarks are private however they come to exist
    assert cfg.defaults("urn:xmpp:bookmarks:1").access_model == "whitelist"
    assert cfg.defaults("urn:xmpp:bookmarks:1").max_items == MAX
    assert cfg.defaults("storage:bookmarks").access_model == "whitelist"
    assert cfg.defaults("urn:xmpp:avatar:data") == NodeConfig()


def test_limit_and_json_round_trip() -> None:
    assert NodeConfig(max_items=MAX).limit(500) == 500
    assert NodeConfig(max_items=10000).limit(500) == 500  # kept as asked, applied capped
    assert NodeConfig(max_items=3).limit(500) == 3
    c = NodeConfig(access_model="roster", roster_groups_allowed=("A", "B"), max_items=MAX,
                   title="T")
    assert NodeConfig.from_json(c.to_json()) == c
    # unknown keys from another version are ignored, missing ones take defaults
    assert NodeConfig.from_json('{"access_model": "open", "gone": 1}') == NodeConfig(
        access_model="open")


def test_apply_changes_only_submitted_fields() -> None:
    c = cfg.apply(NodeConfig(title="keep"), submitted(
        f"{PUBSUB}#node_config", ("pubsub#access_model", ["open"]),
        ("pubsub#max_items", ["max"]), ("pubsub#notify_retract", ["0"]),
        ("pubsub#roster_groups_allowed", ["a", "b", "a"])))
    assert c == NodeConfig(title="keep", access_model="open", max_items=MAX,
                           notify_retract=False, roster_groups_allowed=("a", "b"))


@pytest.mark.parametrize("fields,condition,app", [
    ((("pubsub#access_model", ["authorize"]),), "not-acceptable", "unsupported-access-model"),
    ((("pubsub#access_model", ["everyone"]),), "not-acceptable", "unsupported-access-model"),
    ((("pubsub#max_items", ["0"]),), "not-acceptable", None),
    ((("pubsub#max_items", ["ten"]),), "not-acceptable", None),
    ((("pubsub#persist_items", ["yes"]),), "not-acceptable", None),
    ((("pubsub#publish_model", ["open"]),), "not-acceptable", None),
    ((("pubsub#body_xslt", ["x"]),), "not-acceptable", None),
])
def test_apply_rejects(fields: tuple[tuple[str, list[str]], ...], condition: str,
                       app: str | None) -> None:
    with pytest.raises(StanzaError) as exc:
        cfg.apply(NodeConfig(), submitted(f"{PUBSUB}#node_config", *fields))
    assert exc.value.condition == condition and app_condition(exc.value) == app


def test_forms_must_be_submitted_with_the_right_form_type() -> None:
    with pytest.raises(StanzaError) as exc:
        cfg.apply(NodeConfig(), submitted(f"{PUBSUB}#publish-options"))
    assert exc.value.condition == "bad-request"
    with pytest.raises(StanzaError) as exc:
        cfg.preconditions(submitted(f"{PUBSUB}#publish-options", type_="form"))
    assert exc.value.condition == "bad-request"


def test_preconditions() -> None:
    wanted = cfg.preconditions(submitted(
        f"{PUBSUB}#publish-options", ("pubsub#access_model", ["open"]),
        ("pubsub#max_items", ["max"]), ("pubsub#persist_items", ["1"])))
    assert wanted == {"access_model": "open", "max_items": MAX, "persist_items": True}
    cfg.check(NodeConfig(access_model="open", max_items=MAX), wanted)  # met
    with pytest.raises(StanzaError) as exc:
        cfg.check(NodeConfig(access_model="open"), wanted)  # max_items 1 != max
    assert exc.value.condition == "conflict"
    assert app_condition(exc.value) == "precondition-not-met"
    # persist_items "true" and "1" are the same boolean
    cfg.check(NodeConfig(), cfg.preconditions(submitted(
        f"{PUBSUB}#publish-options", ("pubsub#persist_items", ["true"]))))
    # group lists compare as sets
    cfg.check(NodeConfig(roster_groups_allowed=("a", "b")), {"roster_groups_allowed": ("b", "a")})
    # §7.1.5: an unknown field must make the publish fail
    with pytest.raises(StanzaError) as exc:
        cfg.preconditions(submitted(f"{PUBSUB}#publish-options", ("pubsub#frobnicate", ["1"])))
    assert exc.value.condition == "conflict"


def test_configuration_form() -> None:
    el = cfg.form(NodeConfig(max_items=MAX, roster_groups_allowed=("Friends",)),
                  groups=["Work"])
    form = forms.Form.parse(el)
    assert form.type == "form" and form.form_type == f"{PUBSUB}#node_config"
    assert form.value("pubsub#max_items") == "max"
    assert form.fields["pubsub#persist_items"].type == "boolean"
    assert form.value("pubsub#access_model") == "presence"
    groups = form.fields["pubsub#roster_groups_allowed"]
    assert groups.values == ["Friends"]
    # submitting the form as received changes nothing
    back = forms.Form("submit", form.fields)
    assert cfg.apply(NodeConfig(max_items=MAX, roster_groups_allowed=("Friends",)),
                     back) == NodeConfig(max_items=MAX, roster_groups_allowed=("Friends",))
    meta = forms.Form.parse(cfg.meta_data(NodeConfig(), "a@b", "2024-01-01T00:00:00Z"))
    assert meta.form_type == f"{PUBSUB}#meta-data" and meta.value("pubsub#owner") == "a@b"
