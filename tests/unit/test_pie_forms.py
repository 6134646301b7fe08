"""Configurations as forms in XEP-0227 files (xmppd/pie/forms.py): every field the plugins
store has a form field, forms come back as what they were written from, and another
server's node form (Prosody's, with empty and unknown fields) is read leniently. And every
table of the schema has a decided place in an export."""

from __future__ import annotations

import dataclasses
import json

import pytest

from plugins.muc.config import RoomConfig
from plugins.pep.config import NodeConfig
from xmppd.pie.forms import ROOM_FIELDS, node_config, node_form, room_config, room_form
from xmppd.pie.model import PieError, Report, Where
from xmppd.xmlparser import parse_fragment

HERE = Where("t.xml", 1, 0)


def test_every_room_setting_has_a_form_field() -> None:
    stored = {f.name for f in dataclasses.fields(RoomConfig)}
    assert stored == {name for name, _kind, _choices in ROOM_FIELDS.values()}


def test_room_configuration_round_trip() -> None:
    cfg = RoomConfig(name="Cave", description="d", persistent=True, members_only=True,
                     password_protected=True, password="pw", max_users=42, whois="anyone",
                     allow_pm="none", history_length=7, logging=True, archiving=False,
                     presence_broadcast=frozenset({"moderator"}),
                     member_list_roles=frozenset({"moderator", "participant"})).to_json()
    back = room_config(room_form(cfg), "cave", HERE, Report())
    assert back == cfg


def test_a_bad_room_value_is_an_error_naming_the_field() -> None:
    form = room_form(RoomConfig(persistent=True).to_json())
    form = parse_fragment(form.toXml().replace(">moderators<", ">everybody<"))
    with pytest.raises(PieError, match="muc#roomconfig_whois cannot be 'everybody'"):
        room_config(form, "r", HERE, Report())


def test_node_configuration_round_trip() -> None:
    cfg = NodeConfig(title="t", access_model="whitelist", max_items="max",
                     roster_groups_allowed=("a", "b"), send_last_published_item="never")
    assert node_config(node_form(cfg.to_json()), "n", HERE, Report()) == cfg.to_json()


def test_a_prosody_node_form_is_read_leniently() -> None:
    form = parse_fragment(
        "<x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE' type='hidden'>"
        "<value>http://jabber.org/protocol/pubsub#node_config</value></field>"
        "<field var='pubsub#title' type='text-single'/>"
        "<field var='pubsub#max_items' type='text-single'/>"
        "<field var='pubsub#access_model' type='list-single'><value>open</value></field>"
        "<field var='pubsub#publish_model' type='list-single'><value>open</value></field>"
        "<field var='pubsub#itemreply' type='list-single'><value>owner</value></field>"
        "</x>")
    report = Report()
    cfg = json.loads(node_config(form, "urn:xmpp:vcard4", HERE, report))
    assert cfg["access_model"] == "open"
    assert cfg["max_items"] == 1 and cfg["title"] == ""  # empty fields: the defaults
    assert cfg["publish_model"] == "publishers"  # unsupported value: the default, reported
    assert len(report.notes) == 2
    assert "pubsub#publish_model=['open'] is not supported" in report.notes[0]
    assert "pubsub#itemreply is not supported" in report.notes[1]


def test_every_table_has_a_place_in_an_export() -> None:
    """On PostgreSQL and MariaDB a backup is an export: a table nobody decided about would be
    missing from every backup."""
    from storage.facade import Storage  # noqa: F401 (every store registers its tables)
    from storage.schema import metadata
    from xmppd.pie.exporter import TABLES

    assert set(TABLES) == set(metadata.tables)
