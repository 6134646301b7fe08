"""XEP-0157 contact addresses in the server's disco#info, read by a slixmpp client over a
real connection; configured per host, the admins as a fallback, changed by a reload."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.client import Client, connect, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

DATA = "jabber:x:data"
SERVERINFO = "http://jabber.org/network/serverinfo"
CONTACT: dict[str, Any] = {
    "abuse": ["mailto:abuse@example.org", "xmpp:abuse@localhost"],
    "security": ["xmpp:security@localhost?message"],
    "status": ["https://status.example.org/"],
}
ADMIN = "boss@localhost"


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp("contact"), "sqlite", ca, config={
        "hosts": {"localhost": {"contact": CONTACT, "admins": [ADMIN]}}})


async def serverinfo(c: Client, to: str = "localhost") -> list[ET.Element]:
    """The serverinfo forms of ``to``'s disco#info (XEP-0128: <x/> in the query)."""
    info = await c.plugin["xep_0030"].get_info(jid=to)
    query = info.xml.find("{http://jabber.org/protocol/disco#info}query")
    assert query is not None
    forms = []
    for x in query.findall(f"{{{DATA}}}x"):
        form_type = x.find(f"{{{DATA}}}field[@var='FORM_TYPE']")
        if form_type is not None and form_type.findtext(f"{{{DATA}}}value") == SERVERINFO:
            forms.append(x)
    return forms


def fields(form: ET.Element) -> dict[str, list[str]]:
    return {f.get("var", ""): [v.text or "" for v in f.findall(f"{{{DATA}}}value")]
            for f in form.findall(f"{{{DATA}}}field")}


def test_configured_addresses_are_published(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("ct")

    async def body() -> None:
        c = await connect(srv, jid)
        forms = await serverinfo(c)
        assert len(forms) == 1
        form = forms[0]
        # XEP-0157 §3 / XEP-0128: a result form, FORM_TYPE hidden, list-multi fields
        assert form.get("type") == "result"
        ft = form.find(f"{{{DATA}}}field[@var='FORM_TYPE']")
        assert ft is not None and ft.get("type") == "hidden"
        got = fields(form)
        assert got == {"FORM_TYPE": [SERVERINFO],
                       "abuse-addresses": CONTACT["abuse"],
                       "security-addresses": CONTACT["security"],
                       "status-addresses": CONTACT["status"]}
        for f in form.findall(f"{{{DATA}}}field"):
            if f.get("var") != "FORM_TYPE":
                assert f.get("type") == "list-multi"
        # the server's own identity and features are still there
        info = await c.plugin["xep_0030"].get_info(jid="localhost")
        assert ("server", "im") in {i[:2] for i in info["disco_info"]["identities"]}
        # only the domain carries it, not an account (§3: "sent to the bare domain")
        assert await serverinfo(c, jid) == []
        await c.close()

    run(body())


def test_admins_are_the_fallback_and_a_reload_applies_changes(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("cr")

    async def body() -> None:
        c = await connect(srv, jid)
        srv.extra["hosts"] = {"localhost": {"admins": [ADMIN]}}  # no contact table
        srv._write_config()
        r = srv.cli("reload")
        assert r.returncode == 0 and "contact" in r.stdout, (r.stdout, r.stderr)
        (form,) = await serverinfo(c)
        assert fields(form) == {"FORM_TYPE": [SERVERINFO], "admin-addresses": [f"xmpp:{ADMIN}"]}
        srv.extra["hosts"] = {"localhost": {"contact": {"support": ["https://example.org/h"]}}}
        srv._write_config()
        assert srv.cli("reload").returncode == 0
        (form,) = await serverinfo(c)
        assert fields(form) == {"FORM_TYPE": [SERVERINFO],
                                "support-addresses": ["https://example.org/h"]}
        srv.extra["hosts"] = {"localhost": {}}  # nothing to say: no form at all
        srv._write_config()
        assert srv.cli("reload").returncode == 0
        assert await serverinfo(c) == []
        # a bad address is refused by the reload and changes nothing
        srv.extra["hosts"] = {"localhost": {"contact": {"abuse": ["not a uri"]}}}
        srv._write_config()
        r = srv.cli("reload")
        assert "hosts.localhost.contact.abuse[0]" in r.stdout + r.stderr
        assert await serverinfo(c) == []
        srv.extra["hosts"] = {"localhost": {"contact": CONTACT, "admins": [ADMIN]}}
        srv._write_config()
        assert srv.cli("reload").returncode == 0
        (form,) = await serverinfo(c)
        assert "abuse-addresses" in fields(form)
        await c.close()

    run(body())
