"""XEP-0153 photo hashes and the directory fields taken from a vCard."""

from __future__ import annotations

import base64
import hashlib

import pytest

from plugins.vcard import directory_entry, photo_hash
from storage.directory import DirectoryEntry
from xmppd.errors import StanzaError
from xmppd.xmlparser import parse_fragment

DATA = b"\x89PNG\r\n\x1a\n" + bytes(range(200))


def card(inner: str) -> object:
    return parse_fragment(f"<vCard xmlns='vcard-temp'>{inner}</vCard>")


def test_photo_hash_of_the_decoded_data_ignoring_whitespace() -> None:
    wrapped = base64.encodebytes(DATA).decode()  # 76-character lines
    assert "\n" in wrapped
    el = card(f"<PHOTO><TYPE>image/png</TYPE><BINVAL>\n {wrapped}\t</BINVAL></PHOTO>")
    assert photo_hash(el) == hashlib.sha1(DATA).hexdigest()  # type: ignore[arg-type]


@pytest.mark.parametrize("inner", [
    "", "<FN>x</FN>", "<PHOTO/>", "<PHOTO><BINVAL> </BINVAL></PHOTO>",
    "<PHOTO><EXTVAL>https://example.org/a.png</EXTVAL></PHOTO>"])
def test_no_photo(inner: str) -> None:
    assert photo_hash(card(inner)) is None  # type: ignore[arg-type]


def test_binval_that_is_not_base64_is_a_bad_request() -> None:
    with pytest.raises(StanzaError) as exc:
        photo_hash(card("<PHOTO><BINVAL>not*base64</BINVAL></PHOTO>"))  # type: ignore[arg-type]
    assert exc.value.condition == "bad-request"


def test_directory_fields() -> None:
    el = card("<FN> Juliet   Capulet </FN><N><FAMILY>Capulet</FAMILY><GIVEN>Juliet</GIVEN></N>"
              "<NICKNAME>JuliC</NICKNAME><EMAIL><HOME/></EMAIL>"
              "<EMAIL><INTERNET/><USERID>juliet@example.org</USERID></EMAIL>")
    assert directory_entry("juliet", el) == DirectoryEntry(  # type: ignore[arg-type]
        "juliet", fn="Juliet Capulet", nick="JuliC", given="Juliet", family="Capulet",
        email="juliet@example.org")
    # XEP-0153's own example puts the address straight into <EMAIL/>
    el = card("<EMAIL>jcapulet@shakespeare.lit</EMAIL><NICKNAME/>")
    assert directory_entry("j", el) == DirectoryEntry(  # type: ignore[arg-type]
        "j", email="jcapulet@shakespeare.lit")


def test_hooks_and_set_photo_in_process() -> None:
    from plugins.private import PRIVATE_STORED, Private, PrivateEvent
    from plugins.vcard import VCARD_STORED, VCard, VCardEvent
    from tests.support.inproc import FakeSession, add_user, make_server, resolve
    from xmppd import stanza as st
    from xmppd.errors import StanzaError
    from xmppd.jid import JID

    server = make_server(["roster", "presence", "vcard", "private"])
    add_user(server, "juliet@localhost")
    user = JID.parse("juliet@localhost")
    host = server.hosts["localhost"]
    vcard, private = host.require(VCard), host.require(Private)
    heard: list[tuple[str, str]] = []

    async def heard_vcard(ev: VCardEvent) -> None:
        heard.append((str(ev.user), ev.vcard.name))

    async def heard_private(ev: PrivateEvent) -> None:
        heard.append((str(ev.user), ev.element.name))

    async def broken(ev: object) -> None:
        raise RuntimeError("a mirror that fails")

    async def refusing(ev: object) -> None:
        raise StanzaError("not-acceptable", text="a mirror that refuses")

    # A mirror that fails is logged, one that refuses too: the set has succeeded either way.
    host.on(VCARD_STORED, broken, priority=2)
    host.on(VCARD_STORED, heard_vcard, priority=1)
    host.on(VCARD_STORED, refusing)
    host.on(PRIVATE_STORED, broken, priority=2)
    host.on(PRIVATE_STORED, heard_private, priority=1)
    host.on(PRIVATE_STORED, refusing)
    session = FakeSession(server, "juliet@localhost/r", priority=None)
    for payload in ("<vCard xmlns='vcard-temp'><FN>J</FN></vCard>",
                    "<query xmlns='jabber:iq:private'><prefs xmlns='urn:example:p'/></query>"):
        iq = st.iq("set", "s")
        st.append(iq, parse_fragment(payload))
        session.stanza(iq)
        assert [e.getAttribute("type") for e in session.take()] == ["result"]
    assert heard == [("juliet@localhost", "vCard"), ("juliet@localhost", "prefs")]
    # on the server's behalf: stored, hashed, nobody told
    b64 = base64.b64encode(DATA).decode()
    assert resolve(vcard.set_photo(user, "image/png", b64)) is True
    assert resolve(vcard.photo_of(user)) == hashlib.sha1(DATA).hexdigest()
    async def stored_vcard() -> object:
        return await server.storage.vcard.get("localhost", "juliet")

    stored = resolve(stored_vcard())
    assert "<FN>J</FN>" in stored.xml and "image/png" in stored.xml
    assert resolve(vcard.set_photo(user, None, "A" * 200000)) is False  # over max_size
    resolve(private.store(user, parse_fragment("<storage xmlns='storage:bookmarks'/>")))
    async def load(name: str, ns: str) -> tuple[object]:  # (resolve() cannot return Elements)
        return (await private.load(user, name, ns),)

    (loaded,) = resolve(load("storage", "storage:bookmarks"))
    assert loaded is not None and loaded.uri == "storage:bookmarks"  # type: ignore[attr-defined]
    assert resolve(load("nothing", "urn:none")) == (None,)
    assert len(heard) == 2
