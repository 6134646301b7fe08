"""In-band registration (XEP-0077), invitations (XEP-0445 with `xmppd invite`), password
change and account cancellation, against servers with registration off and on."""

from __future__ import annotations

import asyncio
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import start_server
from tests.integration.test_presence import befriend
from tests.integration.test_vcard import vcard_iq
from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.raw import RawStream, q, stanza_error
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

R = "{jabber:iq:register}"
NS_FEATURE = "http://jabber.org/features/iq-register"
NS_TOKEN = "urn:xmpp:ibr-token:0"


@pytest.fixture(scope="module")
def open_server(backend: str, ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[ServerProcess]:
    config = {"plugins": {"register": {"allow_registration": True, "max_per_ip": 1000}}}
    yield from start_server(tmp_path_factory.mktemp(f"reg-{backend}"), backend, ca,
                            config=config)


async def unauthenticated(server: ServerProcess) -> tuple[RawStream, ET.Element]:
    """A stream after STARTTLS, before SASL; returns it with its features."""
    raw = await RawStream.open(server.c2s_port)
    await raw.open_stream()
    await raw.starttls(str(server.ca.ca_file))
    return raw, await raw.open_stream()


def legacy(username: str, password: str) -> str:
    return (f"<query xmlns='jabber:iq:register'><username>{username}</username>"
            f"<password>{password}</password></query>")


def form(username: str, password: str) -> str:
    return ("<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE' type='hidden'><value>jabber:iq:register</value></field>"
            f"<field var='username'><value>{username}</value></field>"
            f"<field var='password'><value>{password}</value></field></x></query>")


async def register(server: ServerProcess, payload: str, token: str | None = None
                   ) -> ET.Element:
    raw, _ = await unauthenticated(server)
    if token is not None:
        res = await raw.iq(f"<preauth xmlns='urn:xmpp:pars:0' token='{token}'/>",
                           type_="set", id_="pa")
        assert res.get("type") == "result", ET.tostring(res)
    res = await raw.iq(payload, type_="set", id_="reg")
    raw.close()
    return res


async def can_login(server: ServerProcess, jid: str, password: str) -> bool:
    try:
        c = await connect(server, jid + "/check", password=password, presence=False)
    except PermissionError:
        return False
    await c.close()
    return True


def invite(server: ServerProcess, *args: str) -> str:
    r = server.cli("invite", "localhost", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()[1].strip()


def rows(server: ServerProcess, user: str) -> dict[str, int]:
    """How many rows each per-user table holds for ``user``@localhost."""
    engine = create_engine(server.storage_url)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(text(
                f"SELECT COUNT(*) FROM {t} WHERE host = 'localhost' AND username = :u"),
                {"u": user}).scalar_one()
                for t in ("accounts", "credentials", "kv", "vcards", "directory",
                          "roster_items", "roster_versions", "blocklist")}
    finally:
        engine.dispose()


# -- registration off (the default) -----------------------------------------------------------

def test_registration_is_off_by_default(server: ServerProcess) -> None:
    async def body() -> None:
        raw, features = await unauthenticated(server)
        assert features.find(q(NS_FEATURE, "register")) is None
        assert features.find(q(NS_TOKEN, "register")) is None
        for i, (type_, payload) in enumerate((
                ("get", "<query xmlns='jabber:iq:register'/>"),
                ("set", legacy("someone", "secret")),
                ("set", "<preauth xmlns='urn:xmpp:pars:0' token='x'/>"))):
            res = await raw.iq(payload, type_=type_, id_=f"r{i}")
            assert stanza_error(res) == ("cancel", "service-unavailable")  # §3.1
        raw.close()

    run(body())
    assert server.cli("users").stdout.split().count("someone@localhost") == 0


def test_a_preauth_answer_carries_no_address_the_client_wrote(server: ServerProcess) -> None:
    """Found by the fuzzer: before authentication an IQ with a made-up 'from' got its error
    addressed to that JID (from the host it named in 'to'). The answer names nobody."""
    async def body() -> None:
        raw, _ = await unauthenticated(server)
        await raw.send("<iq type='set' id='f1' from='room@conference.localhost' "
                       "to='conference.localhost'><query xmlns='jabber:iq:register'/></iq>")
        res = await raw.read()
        assert res.get("id") == "f1" and stanza_error(res) == ("cancel", "service-unavailable")
        assert res.get("to") is None and res.get("from") is None, ET.tostring(res)
        await raw.send("<iq type='get' id='f2' from='bob@localhost/x' to='localhost'>"
                       "<query xmlns='jabber:iq:register'/></iq>")
        res = await raw.read()
        assert res.get("id") == "f2" and res.get("to") is None and res.get("from") is None
        raw.close()

    run(body())


def test_an_answer_before_binding_carries_no_address_the_client_wrote(
        server: ServerProcess) -> None:
    """Found by the fuzzer (seed 20261209): authenticated but not bound, an IQ claiming
    another user's JID in 'from' got its <not-authorized/> addressed to that JID."""
    jid, pw = server.new_user("unbound")

    async def body() -> None:
        raw = await RawStream.open(server.c2s_port)
        await raw.authenticate(str(server.ca.ca_file), jid.split("@")[0], pw)
        await raw.send("<iq type='get' id='u1' from='alice@localhost'>"
                       "<query xmlns='jabber:iq:private'/></iq>")
        res = await raw.read()
        assert res.get("id") == "u1" and stanza_error(res) == ("auth", "not-authorized")
        assert res.get("to") is None and res.get("from") is None, ET.tostring(res)
        raw.close()

    run(body())


def test_change_password(server: ServerProcess) -> None:
    jid, pw = server.new_user("pw")

    async def body() -> None:
        raw = await RawStream.open(server.c2s_port)
        await raw.login(str(server.ca.ca_file), jid.split("@")[0], pw)
        res = await raw.iq("<query xmlns='jabber:iq:register'/>", to="localhost", id_="g")
        query = res.find(R + "query")
        assert query.find(R + "registered") is not None, ET.tostring(res)
        assert query.find(R + "username").text == jid.split("@")[0]
        # an empty password never replaces the old one (§3.3)
        res = await raw.iq(legacy(jid.split("@")[0], ""), type_="set", id_="c0")
        assert stanza_error(res) == ("modify", "bad-request")
        # the form with a wrong old password
        res = await raw.iq(
            "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE'><value>jabber:iq:register:changepassword</value></field>"
            f"<field var='username'><value>{jid}</value></field>"
            "<field var='old_password'><value>wrong</value></field>"
            "<field var='password'><value>n3w-pass</value></field></x></query>",
            type_="set", to="localhost", id_="c1")
        assert stanza_error(res)[1] == "not-authorized"
        res = await raw.iq(legacy(jid.split("@")[0], "n3w-pass"), type_="set",
                           to="localhost", id_="c2")
        assert res.get("type") == "result"
        raw.close()
        assert await can_login(server, jid, "n3w-pass")
        assert not await can_login(server, jid, pw)

    run(body())


def test_cancel_removes_the_account_and_its_data(server: ServerProcess) -> None:
    (x, _), (y, _) = server.new_user("gone"), server.new_user("stays")
    user = x.split("@")[0]

    async def body() -> None:
        cx = await connect(server, x + "/one", plugins=("xep_0191",))
        cy = await connect(server, y + "/one")
        await befriend(cx, cy)
        await vcard_iq(cx, "set", "<vCard xmlns='vcard-temp'><FN>Soon Gone</FN></vCard>")
        priv = cx.make_iq_set()
        priv.xml.append(ET.fromstring("<query xmlns='jabber:iq:private'><storage "
                                      "xmlns='storage:bookmarks'/></query>"))
        await priv.send()
        await cx.plugin["xep_0191"].block("spam@example.org")
        before = rows(server, user)
        assert all(before[t] > 0 for t in before), before
        raw = await RawStream.open(server.c2s_port)
        await raw.login(str(server.ca.ca_file), user, server.passwords[x], resource="raw")
        res = await raw.iq("<query xmlns='jabber:iq:register'><remove/><x/></query>",
                           type_="set", id_="bad")
        assert stanza_error(res) == ("modify", "bad-request")  # <remove/> must be alone
        res = await raw.iq("<query xmlns='jabber:iq:register'><remove/></query>",
                           type_="set", id_="rm")
        assert res.get("type") == "result"  # acknowledged first (§3.2) ...
        assert await raw.stream_error() == "not-authorized"  # ... then the stream ends
        await asyncio.wait_for(cx.gone, 10)  # every session of the account ends
        # the contact's subscriptions were cancelled and it saw us leave
        types = set()
        while not {"unsubscribe", "unsubscribed"} <= types:
            p = await cy.next_presence(where=lambda p: p["from"].bare == x)
            types.add(p["type"])
        await cy.close()

    run(body())
    # What closing sessions store (the last-presence record) is removed right after them.
    deadline = time.monotonic() + 30
    while any(rows(server, user).values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rows(server, user) == dict.fromkeys(rows(server, user), 0)
    r = server.cli("roster", x)
    assert r.returncode == 1 and "no such user" in r.stderr
    listing = server.cli("roster", y).stdout
    assert x in listing and listing.split(x)[1].split()[0] == "none"
    assert not run(can_login(server, x, server.passwords[x]))


# -- registration on -------------------------------------------------------------------------

def test_register_conflict_and_bad_input(open_server: ServerProcess) -> None:
    server = open_server
    name = f"new{secrets.token_hex(4)}"

    async def body() -> None:
        raw, features = await unauthenticated(server)
        assert features.find(q(NS_FEATURE, "register")) is not None
        assert features.find(q(NS_TOKEN, "register")) is not None
        res = await raw.iq("<query xmlns='jabber:iq:register'/>", id_="f")  # §3.1 fields
        query = res.find(R + "query")
        assert query.find(R + "username") is not None and query.find(R + "password") is not None
        x = query.find("{jabber:x:data}x")
        assert {f.get("var") for f in x.findall("{jabber:x:data}field")} == {
            "FORM_TYPE", "username", "password"}
        res = await raw.iq(legacy(name.upper(), "s3cret"), type_="set", id_="r1")
        assert res.get("type") == "result"
        # one account per stream (§3.1.1)
        res = await raw.iq(legacy(name + "x", "s3cret"), type_="set", id_="r2")
        assert stanza_error(res) == ("modify", "not-acceptable")
        raw.close()
        assert await can_login(server, f"{name}@localhost", "s3cret")  # prepared: lowercase
        # the name is taken now, whichever way it is asked for (§3.1)
        for payload in (legacy(name, "other"), form(name.capitalize(), "other")):
            res = await register(server, payload)
            assert stanza_error(res) == ("cancel", "conflict")
        assert await can_login(server, f"{name}@localhost", "s3cret")
        # bad usernames (RFC 7622 §3.3) and missing fields: not-acceptable
        for payload in (legacy("has space", "pw"), legacy("a@b", "pw"), legacy("x/y", "pw"),
                        legacy("x" * 300, "pw"), legacy(name + "2", ""),
                        f"<query xmlns='jabber:iq:register'><username>{name}3</username>"
                        "</query>", form("", "pw")):
            res = await register(server, payload)
            assert stanza_error(res) == ("modify", "not-acceptable"), payload
        # a data form registers too
        res = await register(server, form(name + "form", "f0rm"))
        assert res.get("type") == "result"
        assert await can_login(server, f"{name}form@localhost", "f0rm")
        # nothing to remove before authenticating
        res = await register(server, "<query xmlns='jabber:iq:register'><remove/></query>")
        assert stanza_error(res)[1] == "unexpected-request"

    run(body())


def test_registered_account_changes_password_and_cancels(open_server: ServerProcess) -> None:
    server = open_server
    name = f"life{secrets.token_hex(4)}"

    async def body() -> None:
        res = await register(server, legacy(name, "first"))
        assert res.get("type") == "result"
        c = await connect(server, f"{name}@localhost/x", password="first")
        iq = c.make_iq_set()
        iq.xml.append(ET.fromstring(legacy(name, "second")))
        await iq.send()
        await c.close()
        assert await can_login(server, f"{name}@localhost", "second")
        c = await connect(server, f"{name}@localhost/x", password="second")
        iq = c.make_iq_set(ito="localhost")
        iq.xml.append(ET.fromstring("<query xmlns='jabber:iq:register'><remove/></query>"))
        await iq.send()
        await asyncio.wait_for(c.gone, 10)
        assert "not-authorized" in c.stream_errors
        assert not await can_login(server, f"{name}@localhost", "second")
        # the name is free again
        res = await register(server, legacy(name, "third"))
        assert res.get("type") == "result"

    run(body())


# -- invitations and the rate limit ----------------------------------------------------------

def test_invite_only_and_rate_limit(backend: str, ca: CertAuthority, tmp_path: Path) -> None:
    config: dict[str, Any] = {"plugins": {"register": {
        "allow_registration": True, "require_invite": True, "max_per_ip": 2}}}
    with contextmanager(start_server)(tmp_path, backend, ca, config=config) as server:
        run(invite_only(server))


async def invite_only(server: ServerProcess) -> None:
    # without an invitation: forbidden
    res = await register(server, legacy("uninvited", "pw"))
    assert stanza_error(res) == ("auth", "forbidden")
    # unknown and expired tokens: item-not-found (XEP-0445 §5)
    expired = invite(server, "--days=-1")
    for token in ("bogus", expired):
        raw, _ = await unauthenticated(server)
        res = await raw.iq(f"<preauth xmlns='urn:xmpp:pars:0' token='{token}'/>",
                           type_="set", id_="pa")
        assert stanza_error(res) == ("cancel", "item-not-found")
        raw.close()
    # a single-use token made with the CLI
    once = invite(server)
    res = await register(server, legacy("invited1", "pw1"), token=once)
    assert res.get("type") == "result"
    assert await can_login(server, "invited1@localhost", "pw1")
    raw, _ = await unauthenticated(server)
    res = await raw.iq(f"<preauth xmlns='urn:xmpp:pars:0' token='{once}'/>",
                       type_="set", id_="pa")
    assert stanza_error(res) == ("cancel", "item-not-found")  # used up
    raw.close()
    # a failed registration does not use the token up
    many = invite(server, "--uses", "5")
    res = await register(server, legacy("invited1", "again"), token=many)
    assert stanza_error(res) == ("cancel", "conflict")
    res = await register(server, legacy("invited2", "pw2"), token=many)
    assert res.get("type") == "result"
    # two accounts from this address within the period: the third must wait
    res = await register(server, legacy("invited3", "pw3"), token=many)
    assert stanza_error(res) == ("wait", "resource-constraint")
    assert not await can_login(server, "invited3@localhost", "pw3")
