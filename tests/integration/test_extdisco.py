"""XEP-0215 External Service Discovery with TURN REST API credentials, against the real
server; passwords are checked against an independent HMAC-SHA1 computation."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.client import Client, connect, run
from tests.support.inproc import FakeSession, add_user, make_server
from tests.support.server import ServerProcess
from xmppd import stanza as st
from xmppd.config import ConfigError
from xmppd.errors import parse_error
from xmppd.xmlparser import parse_fragment

pytestmark = pytest.mark.integration

NS = "urn:xmpp:extdisco:2"
E = f"{{{NS}}}"
LIFETIME = 3600.0
SERVICES: list[dict[str, Any]] = [
    {"type": "stun", "host": "stun.example.org", "port": 3478, "transport": "udp"},
    {"type": "turn", "host": "turn.example.org", "port": 3478, "transport": "udp",
     "restricted": True},
    {"type": "turn", "host": "turn.example.org", "port": 5349, "transport": "tcp",
     "restricted": True, "secret": "per-service secret"},
    {"type": "turns", "host": "turn.example.org", "port": 5349, "transport": "tcp",
     "name": "TLS relay", "username": "fixed-user", "password": "fixed-pass"},
]


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp("extdisco"), "sqlite", ca, config={
        "plugins": {"extdisco": {"secret": "shared secret", "credential_lifetime": LIFETIME,
                                 "services": SERVICES}}})


@pytest.fixture(scope="module")
def bare(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[ServerProcess]:
    """The default configuration: no services."""
    yield from start_server(tmp_path_factory.mktemp("extdisco-bare"), "sqlite", ca)


def expected_password(secret: str, username: str) -> str:
    """draft-uberti-behave-turn-rest-00 §2.2, computed here without the server's code."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


async def query(c: Client, xml: str, to: str = "localhost") -> ET.Element:
    iq = c.make_iq_get(ito=to)
    iq.xml.append(ET.fromstring(xml))
    res = await iq.send()
    return res.xml


async def query_error(c: Client, xml: str) -> IqError:
    with pytest.raises(IqError) as exc:
        await query(c, xml)
    return exc.value


def check_rest_credentials(svc: ET.Element, secret: str, jid: str, t0: float) -> None:
    username, password = svc.get("username", ""), svc.get("password", "")
    expiry, _, user = username.partition(":")
    assert user == jid
    assert t0 + LIFETIME - 5 <= int(expiry) <= time.time() + LIFETIME + 5
    assert password == expected_password(secret, username)
    expires = datetime.datetime.strptime(svc.get("expires", ""), "%Y-%m-%dT%H:%M:%SZ")
    assert expires.replace(tzinfo=datetime.UTC).timestamp() == int(expiry)


def test_feature_is_advertised_even_without_services(bare: ServerProcess) -> None:
    jid, _ = bare.new_user("b")

    async def body() -> None:
        c = await connect(bare, jid + "/b")
        info = await c.plugin["xep_0030"].get_info(jid="localhost")
        assert NS in info["disco_info"]["features"]
        res = await query(c, f"<services xmlns='{NS}'/>")
        services = res.find(E + "services")
        assert services is not None and list(services) == []
        err = await query_error(c, f"<credentials xmlns='{NS}'><service host='turn.example.org'"
                                   " type='turn'/></credentials>")
        assert err.condition == "item-not-found"
        await c.close()

    run(body())


def test_all_services_with_credentials(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("a")

    async def body() -> None:
        c = await connect(srv, jid + "/a")
        t0 = time.time()
        res = await query(c, f"<services xmlns='{NS}'/>")
        services = res.find(E + "services")
        assert services is not None and services.get("type") is None
        got = services.findall(E + "service")
        assert [(s.get("type"), s.get("host"), s.get("port"), s.get("transport"))
                for s in got] == [(s["type"], s["host"], str(s["port"]), s["transport"])
                                  for s in SERVICES]
        stun, turn_udp, turn_tcp, turns = got
        # STUN: no credentials, not restricted
        assert {"username", "password", "expires", "restricted"}.isdisjoint(stun.attrib)
        # TURN: REST API credentials from the global and from the per-service secret
        assert turn_udp.get("restricted") in ("true", "1")
        check_rest_credentials(turn_udp, "shared secret", jid, t0)
        check_rest_credentials(turn_tcp, "per-service secret", jid, t0)
        # fixed credentials are passed on as they are, without an expiry
        assert (turns.get("username"), turns.get("password"), turns.get("name")) == (
            "fixed-user", "fixed-pass", "TLS relay")
        assert turns.get("expires") is None
        await c.close()

    run(body())


def test_services_of_one_type(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("t")

    async def body() -> None:
        c = await connect(srv, jid + "/t")
        res = await query(c, f"<services xmlns='{NS}' type='turn'/>")
        services = res.find(E + "services")
        assert services is not None and services.get("type") == "turn"
        got = services.findall(E + "service")
        assert [(s.get("type"), s.get("port")) for s in got] == [("turn", "3478"),
                                                                 ("turn", "5349")]
        assert all(s.get("password") for s in got)
        res = await query(c, f"<services xmlns='{NS}' type='stun'/>")
        assert [s.get("host") for s in res.iter(E + "service")] == ["stun.example.org"]
        res = await query(c, f"<services xmlns='{NS}' type='ftp'/>")
        assert list(res.iter(E + "service")) == []
        await c.close()

    run(body())


def test_credentials_for_a_service(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("c")

    def ask(attrs: str) -> str:
        return f"<credentials xmlns='{NS}'><service {attrs}/></credentials>"

    async def body() -> None:
        c = await connect(srv, jid + "/c")
        t0 = time.time()
        res = await query(c, ask("host='turn.example.org' type='turn'"))
        got = res.findall(f"{E}credentials/{E}service")
        assert [s.get("port") for s in got] == ["3478", "5349"]  # same host and type
        check_rest_credentials(got[0], "shared secret", jid, t0)
        check_rest_credentials(got[1], "per-service secret", jid, t0)
        res = await query(c, ask("host='turn.example.org' type='turn' port='5349'"))
        (only,) = res.findall(f"{E}credentials/{E}service")
        assert (only.get("host"), only.get("type"), only.get("transport")) == (
            "turn.example.org", "turn", "tcp")
        check_rest_credentials(only, "per-service secret", jid, t0)
        res = await query(c, ask("host='turn.example.org' type='turns'"))
        (fixed,) = res.findall(f"{E}credentials/{E}service")
        assert (fixed.get("username"), fixed.get("password")) == ("fixed-user", "fixed-pass")
        for attrs, condition in (
                ("host='nowhere.example.org' type='turn'", "item-not-found"),
                ("host='turn.example.org' type='turn' port='1'", "item-not-found"),
                ("host='stun.example.org' type='stun'", "item-not-found"),  # none needed
                ("host='turn.example.org'", "bad-request"),
                ("type='turn'", "bad-request"),
                ("host='turn.example.org' type='turn' port='x'", "bad-request")):
            err = await query_error(c, ask(attrs))
            assert err.condition == condition, attrs
        err = await query_error(c, f"<credentials xmlns='{NS}'/>")
        assert err.condition == "bad-request"
        await c.close()

    run(body())


def test_users_of_other_domains_are_refused() -> None:
    srv = make_server(["disco", "extdisco"], hosts=("localhost", "other.example"), options={
        "extdisco": {"secret": "s", "services": SERVICES[:2]}})
    add_user(srv, "carol@other.example")
    c = FakeSession(srv, "carol@other.example/x")
    c.take()
    for payload in (f"<services xmlns='{NS}'/>",
                    f"<credentials xmlns='{NS}'><service host='turn.example.org' type='turn'/>"
                    "</credentials>"):
        el = st.iq("get", "e1", to="localhost")
        st.append(el, parse_fragment(payload))
        c.stanza(el)
        (reply,) = c.take()
        assert parse_error(reply) == ("auth", "forbidden")
    el = st.iq("get", "e2", to="other.example")  # her own server answers
    st.append(el, parse_fragment(f"<services xmlns='{NS}'/>"))
    c.stanza(el)
    (reply,) = c.take()
    assert reply.getAttribute("type") == "result"


@pytest.mark.parametrize("options,message", [
    ({"credential_lifetime": 1.0}, "plugins.extdisco.credential_lifetime"),
    ({"services": [{"type": "bad type", "host": "h"}]}, "plugins.extdisco.services[0].type"),
    ({"services": [{"type": "stun", "host": ""}]}, "plugins.extdisco.services[0].host"),
    ({"services": [{"type": "stun", "host": "h", "port": 70000}]},
     "plugins.extdisco.services[0].port"),
    ({"services": [{"type": "stun", "host": "h", "transport": "u d p"}]},
     "plugins.extdisco.services[0].transport"),
    ({"services": [{"type": "turn", "host": "h", "username": "u"}]},
     "plugins.extdisco.services[0]: username and password"),
    ({"services": [{"host": "h"}]}, "plugins.extdisco.services[0].type: required"),
    ({"services": [{"type": "stun", "host": "h", "bogus": 1}]},
     "plugins.extdisco.services[0].bogus: unknown key"),
])
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        make_server(["disco", "extdisco"], options={"extdisco": options})
    assert str(exc.value).startswith(message), str(exc.value)
