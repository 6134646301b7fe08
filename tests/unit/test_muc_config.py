"""The muc#roomconfig form (XEP-0045 §10.1.3, §10.2, §15.5.3): rendering, validation, and
the §10.2.1 change notifications."""

from __future__ import annotations

import dataclasses

import pytest

from plugins.muc import ns
from plugins.muc.config import Bounds, RoomConfig, config_form, parse_form
from plugins.muc.owner import _notifications
from xmppd import forms
from xmppd.errors import StanzaError

BOUNDS = Bounds(max_occupants=300, max_history=50)


def submit(**fields: str | list[str]) -> forms.Form:
    f = forms.Form("submit")
    f.add("FORM_TYPE", "hidden", ns.ROOMCONFIG)
    for var, value in fields.items():
        name = var if var.startswith("muc#") else "muc#roomconfig_" + var
        f.add(name, None, value)
    return forms.Form.parse(f.to_element())


def test_form_offers_every_supported_field_with_current_values() -> None:
    cfg = RoomConfig(name="Cave", persistent=True, max_users=42, whois="anyone")
    form = forms.Form.parse(config_form(cfg, "coven", ["a@x"], ["o@x"], BOUNDS))
    assert form.type == "form" and form.form_type == ns.ROOMCONFIG
    assert form.value("muc#roomconfig_roomname") == "Cave"
    assert form.value("muc#roomconfig_persistentroom") == "1"
    assert form.value("muc#roomconfig_maxusers") == "42"
    assert form.value("muc#roomconfig_whois") == "anyone"
    assert form.fields["muc#roomconfig_roomadmins"].values == ["a@x"]
    assert form.fields["muc#roomconfig_roomowners"].values == ["o@x"]
    # whatever the form offers, a submission of it is accepted unchanged
    back = forms.Form("submit", fields=form.fields)
    assert parse_form(back, RoomConfig(), BOUNDS).config == cfg


def test_partial_submission_keeps_other_values() -> None:
    cur = RoomConfig(name="Old", moderated=True)
    out = parse_form(submit(roomname="New", publicroom="0", allowpm="moderators",
                            presencebroadcast=["moderator", "participant"],
                            **{"muc#maxhistoryfetch": "7"}), cur, BOUNDS)
    assert out.config == dataclasses.replace(
        cur, name="New", public=False, allow_pm="moderators", history_length=7,
        presence_broadcast=frozenset({"moderator", "participant"}))
    assert out.admins is None and out.owners is None


def test_password_rules() -> None:
    cfg = parse_form(submit(passwordprotectedroom="1", roomsecret="s3"), RoomConfig(),
                     BOUNDS).config
    assert cfg.password_protected and cfg.password == "s3"
    # a secret alone makes the room password-protected; turning protection off clears it
    assert parse_form(submit(roomsecret="x"), RoomConfig(), BOUNDS).config.password_protected
    off = parse_form(submit(passwordprotectedroom="0"), cfg, BOUNDS).config
    assert not off.password_protected and off.password == ""


def test_owner_and_admin_lists_are_full_lists_of_bare_jids() -> None:
    out = parse_form(submit(roomowners=["o@x/res", "p@x"], roomadmins=[]), RoomConfig(),
                     BOUNDS)
    assert out.owners == ["o@x", "p@x"] and out.admins == []


@pytest.mark.parametrize("fields,condition", [
    ({"bogus": "1"}, "bad-request"),  # a field the service does not know
    ({"muc#roomconfig_pubsub": "xmpp:x"}, "bad-request"),  # registered but unsupported
    ({"moderatedroom": "maybe"}, "bad-request"),  # not an XEP-0004 boolean
    ({"whois": "none"}, "not-acceptable"),  # fully-anonymous rooms are deprecated
    ({"allowpm": "everybody"}, "not-acceptable"),
    ({"maxusers": "301"}, "not-acceptable"),
    ({"maxusers": "many"}, "not-acceptable"),
    ({"maxusers": "0"}, "not-acceptable"),
    ({"muc#maxhistoryfetch": "51"}, "not-acceptable"),
    ({"presencebroadcast": ["moderator", "god"]}, "not-acceptable"),
    ({"passwordprotectedroom": "1"}, "not-acceptable"),  # no password given
    ({"roomowners": []}, "not-acceptable"),  # every room keeps an owner
    ({"roomadmins": ["not a jid@"]}, "jid-malformed"),
])
def test_bad_submissions(fields: dict[str, str | list[str]], condition: str) -> None:
    with pytest.raises(StanzaError) as exc:
        parse_form(submit(**fields), RoomConfig(), BOUNDS)
    assert exc.value.condition == condition


def test_form_type_and_kind() -> None:
    f = forms.Form("submit")
    f.add("FORM_TYPE", "hidden", "urn:other")
    with pytest.raises(StanzaError, match="bad-request"):
        parse_form(f, RoomConfig(), BOUNDS)
    with pytest.raises(StanzaError, match="bad-request"):
        parse_form(forms.Form("form"), RoomConfig(), BOUNDS)
    assert parse_form(forms.Form("submit"), RoomConfig(), BOUNDS).config == RoomConfig()


def test_maxusers_none_means_the_service_limit() -> None:
    assert parse_form(submit(maxusers="none"), RoomConfig(), BOUNDS).config.max_users == 300


@pytest.mark.parametrize("change,codes", [
    ({"whois": "anyone"}, (172,)),
    ({"logging": True, "archiving": False}, (104,)),  # still logged: nothing privacy-related
    ({"archiving": False}, (171,)),
    ({"name": "x"}, (104,)),
    ({"archiving": False, "whois": "anyone", "moderated": True}, (171, 172, 104)),
    ({}, ()),
])
def test_change_notifications(change: dict[str, object], codes: tuple[int, ...]) -> None:
    old = RoomConfig()
    assert _notifications(old, dataclasses.replace(old, **change)) == codes  # type: ignore[arg-type]
    if change.get("whois"):
        assert _notifications(dataclasses.replace(old, whois="anyone"), old) == (173,)
    if change == {"archiving": False}:
        assert _notifications(dataclasses.replace(old, **change), old) == (170,)  # type: ignore[arg-type]


def test_json_round_trip_ignores_unknown_keys() -> None:
    cfg = RoomConfig(name="n", presence_broadcast=frozenset({"moderator"}), max_users=9)
    data = cfg.to_json()
    assert RoomConfig.from_json({**data, "retired_option": 1}, RoomConfig()) == cfg
    assert RoomConfig.from_json({}, cfg) == cfg
