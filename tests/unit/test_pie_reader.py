"""The XEP-0227 reader (xmppd/pie/reader.py): streaming by units, XInclude, restricted XML
and errors that say where."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.pie.model import PieError, Where
from xmppd.pie.reader import PieReader


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def open(self, kind: str, attrs: dict[Any, str], where: Where) -> None:
        self.events.append(("open", kind, dict(attrs), where.line))

    def close(self, kind: str, where: Where) -> None:
        self.events.append(("close", kind))

    def unit(self, kind: str, el: Element, where: Where) -> None:
        self.events.append(("unit", kind, el.name, el.uri, where.line, st.serialize(el)))


def read(tmp: Path, text: str | bytes, name: str = "f.xml", **kw: Any) -> Recorder:
    p = tmp / name
    if isinstance(text, str):
        p.write_text(text)
    else:
        p.write_bytes(text)
    rec = Recorder()
    PieReader(rec, **kw).read(p)
    return rec


def test_containers_and_units_in_order(tmp_path: Path) -> None:
    rec = read(tmp_path, "<server-data xmlns='urn:xmpp:pie:0'>\n<host jid='h'>\n"
               "<user name='u'>\n<vCard xmlns='vcard-temp'><FN>x</FN></vCard>\n"
               "<offline-messages><message xmlns='jabber:client'><body>b</body></message>"
               "</offline-messages></user></host></server-data>")
    assert [e[:2] for e in rec.events] == [
        ("open", "server"), ("open", "host"), ("open", "user"), ("unit", "user"),
        ("open", "offline"), ("unit", "offline"), ("close", "offline"), ("close", "user"),
        ("close", "host"), ("close", "server")]
    vcard = rec.events[3]
    assert vcard[2:5] == ("vCard", "vcard-temp", 4)
    assert vcard[5] == '<vCard xmlns="vcard-temp"><FN>x</FN></vCard>'


def test_the_old_namespace_is_read_too(tmp_path: Path) -> None:
    rec = read(tmp_path, "<server-data xmlns='http://www.xmpp.org/extensions/xep-0227.html"
               "#ns'><host jid='h'><user name='u' password='p'/></host></server-data>")
    assert ("open", "user", {"name": "u", "password": "p"}, 1) in rec.events


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user name='u'>",
     "f.xml:1:66: not well-formed XML (no element found)"),
    ("<server-data xmlns='urn:example'/>", "not a XEP-0227 file: the root element is "
     "<server-data xmlns='urn:example'>"),
    ("<?xml version='1.0'?>\n<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 "
     "'&lol;&lol;&lol;'>]>\n<server-data xmlns='urn:xmpp:pie:0'>&lol2;</server-data>",
     "f.xml:2:16: a DOCTYPE (DTD, entity declarations) is not allowed"),
    ("<server-data xmlns='urn:xmpp:pie:0'><host jid='h'>&ext;</host></server-data>",
     "undefined entity"),
    ("<server-data xmlns='urn:xmpp:pie:0'><host jid='h'>some text</host></server-data>",
     "unexpected text 'some text'"),
    ("<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user name='u'>"
     "<vCard xmlns='vcard-temp'><FN>&#0;</FN></vCard></user></host></server-data>",
     "reference to invalid character number"),
])
def test_broken_input_says_where_and_why(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PieError) as err:
        read(tmp_path, text)
    assert message.replace("f.xml", str(tmp_path / "f.xml")) in str(err.value)


def test_an_oversized_element_is_refused_while_it_is_read(tmp_path: Path) -> None:
    big = "<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user name='u'>" \
          "<vCard xmlns='vcard-temp'><FN>" + "x" * 5000 + "</FN></vCard></user></host>" \
          "</server-data>"
    with pytest.raises(PieError, match="element larger than 1000 bytes"):
        read(tmp_path, big, max_unit_bytes=1000)


def test_units_stream_without_building_their_containers(tmp_path: Path) -> None:
    """An archive of many messages comes out one <result/> at a time, each with its line."""
    results = "\n".join(
        f"<result xmlns='urn:xmpp:mam:2' id='{i}'/>" for i in range(2000))
    rec = read(tmp_path, "<server-data xmlns='urn:xmpp:pie:0'><host jid='h'><user name='u'>"
               f"<archive xmlns='urn:xmpp:pie:0#mam'>\n{results}\n</archive></user></host>"
               "</server-data>", max_unit_bytes=100)
    units = [e for e in rec.events if e[0] == "unit"]
    assert len(units) == 2000 and units[-1][4] == 2001


def test_xinclude_as_ejabberd_writes_it(tmp_path: Path) -> None:
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "u.xml").write_text(
        "<user xmlns='urn:xmpp:pie:0' name='u'><vCard xmlns='vcard-temp'/></user>")
    (tmp_path / "host.xml").write_text(
        "<?xml version='1.0' encoding='UTF-8'?><host xmlns='urn:xmpp:pie:0' "
        "xmlns:xi='http://www.w3.org/2001/XInclude' jid='h'><xi:include href='h/u.xml'/>"
        "<user name='v'/></host>")
    rec = read(tmp_path, "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/"
               "2001/XInclude'><xi:include href='host.xml'/></server-data>")
    assert [e[:2] for e in rec.events] == [
        ("open", "server"), ("open", "host"), ("open", "user"), ("unit", "user"),
        ("close", "user"), ("open", "user"), ("close", "user"), ("close", "host"),
        ("close", "server")]


@pytest.mark.parametrize("href, message", [
    ("/etc/passwd", "points outside"),
    ("../outside.xml", "points outside"),
    ("http://example.com/x.xml", "only relative file references"),
    ("f.xml", "includes itself"),
    ("missing.xml", "cannot read"),
])
def test_xinclude_refusals(tmp_path: Path, href: str, message: str) -> None:
    with pytest.raises(PieError, match=message):
        read(tmp_path, "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/"
             f"2001/XInclude'><xi:include href='{href}'/></server-data>")


def test_an_included_file_must_hold_what_belongs_there(tmp_path: Path) -> None:
    (tmp_path / "u.xml").write_text("<user xmlns='urn:xmpp:pie:0' name='u'/>")
    with pytest.raises(PieError, match=r"u.xml:1:1: an included file must hold a <host"):
        read(tmp_path, "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/"
             "2001/XInclude'><xi:include href='u.xml'/></server-data>")
