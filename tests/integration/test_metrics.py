"""Prometheus metrics of the running server, read over real HTTP after real traffic.

The server runs once per storage backend (the storage latency and offline counts come from
its database); a second pair of servers federates, for the s2s series.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.conftest import start_server
from tests.integration.test_federation import federation_config, free_port
from tests.support.backends import database
from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.metrics import Samples, fetch, parse, sample
from tests.support.raw import NS_SASL, RawStream, q
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
TOKEN = secrets.token_urlsafe(24)
LISTENERS = [{"type": "c2s", "port": 0, "address": "127.0.0.1"},
             {"type": "c2s_tls", "port": 0, "address": "127.0.0.1"},
             {"type": "https", "port": 0, "address": "127.0.0.1"},
             {"type": "http", "port": 0, "address": "127.0.0.1"}]
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"


@pytest.fixture(scope="module")
def srv(backend: str, ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp(f"metrics-{backend}"), backend, ca, config={
        "listeners": LISTENERS,
        "metrics": {"allow_networks": ["127.0.0.1/32"], "token": TOKEN, "offline_cache": 0.0},
        "auth": {"ban_after": 3, "throttle_after": 100, "max_failures_per_stream": 50},
    })


def scrape(srv: ServerProcess) -> Samples:
    resp = fetch(srv.ports["http"][0], token=TOKEN)
    assert resp.status == 200, resp
    return parse(resp.body)


def test_only_administrators_read_metrics(srv: ServerProcess) -> None:
    port = srv.ports["http"][0]
    ok = fetch(port, token=TOKEN)
    assert ok.status == 200 and ok.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "xmppd_connections" in ok.body and ok.headers["cache-control"] == "no-store"
    tls = fetch(srv.https_port, token=TOKEN, tls_ca=str(srv.ca.ca_file))
    assert tls.status == 200 and "xmppd_sessions" in tls.body
    om = fetch(port, token=TOKEN, headers={"Accept": "application/openmetrics-text"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.body.endswith("# EOF\n")

    missing = fetch(port)
    assert (missing.status, missing.body) == (401, "unauthorized\n")
    assert missing.headers["www-authenticate"] == 'Bearer realm="xmppd"'
    wrong = fetch(port, token=TOKEN[:-1])
    assert (wrong.status, wrong.body) == (401, "unauthorized\n")
    # Not an allowed address (any 127.x.y.z is local on Linux): the token does not help.
    other = fetch(port, token=TOKEN, source="127.0.0.9")
    assert (other.status, other.body) == (403, "forbidden\n")
    # 127.0.0.1 is a trusted proxy by default: the client it forwards for is checked.
    forwarded = fetch(port, token=TOKEN, headers={"X-Forwarded-For": "198.51.100.4"})
    assert forwarded.status == 403
    # A client cannot make itself local with the header.
    spoof = fetch(port, token=TOKEN, source="127.0.0.9", headers={"X-Forwarded-For": "127.0.0.1"})
    assert spoof.status == 403


async def failed_login(srv: ServerProcess, source: str, user: str) -> str:
    raw = await RawStream.open(srv.c2s_port, source=source)
    try:
        await raw.open_stream()
        await raw.starttls(str(srv.ca.ca_file))
        await raw.open_stream()
        el = await raw.auth_plain(user, "wrong password")
        assert el.tag == q(NS_SASL, "failure")
        return next(c.tag.split("}")[1] for c in el if not c.tag.endswith("}text"))
    finally:
        raw.close()


def test_counters_follow_real_traffic(srv: ServerProcess) -> None:
    alice, _ = srv.new_user("alice")
    bob, _ = srv.new_user("bob")
    carol, _ = srv.new_user("carol")
    before = scrape(srv)
    during: dict[str, Samples] = {}

    async def body() -> None:
        ca = await connect(srv, alice + "/a")
        cb = await connect(srv, bob + "/b")
        ca.send_message(mto=bob, mbody="hello", mtype="chat")
        assert (await cb.next_message())["body"] == "hello"
        ca.send_message(mto=carol, mbody="later", mtype="chat")  # offline: stored
        assert await ca.plugin["xep_0199"].ping("localhost", timeout=10) is not None
        # Three wrong passwords from one address; the fourth attempt is refused (banned).
        source = "127.0.0.31"
        for _ in range(3):
            assert await failed_login(srv, source, "alice") == "not-authorized"
        assert await failed_login(srv, source, "bob") == "temporary-auth-failure"
        # A WebSocket client (RFC 7395): its <open/> answered means its session exists.
        tls = ssl.create_default_context(cafile=str(srv.ca.ca_file))
        tls.check_hostname = False
        ws = await websockets.connect(f"wss://127.0.0.1:{srv.https_port}/xmpp-websocket",
                                      subprotocols=["xmpp"], ssl=tls)
        await ws.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
        assert "open" in await ws.recv()
        assert "features" in await ws.recv()
        during["samples"] = await asyncio.to_thread(scrape, srv)
        await ws.close()
        await ca.close()
        await cb.close()

    run(body())
    after = during["samples"]

    def grew(name: str, by: float, **labels: str) -> None:
        delta = sample(after, name, **labels) - sample(before, name, **labels)
        assert delta >= by, f"{name}{labels} grew by {delta}, expected at least {by}"

    grew("xmppd_authentications_total", 2, result="success")
    grew("xmppd_authentications_total", 3, result="failure")
    grew("xmppd_authentications_total", 1, result="banned")
    assert sample(after, "xmppd_auth_bans", kind="address") >= 1
    grew("xmppd_stanzas_received_total", 2, stream="c2s", kind="message")
    grew("xmppd_stanzas_received_total", 2, stream="c2s", kind="presence")
    grew("xmppd_stanzas_received_total", 1, stream="c2s", kind="iq")
    grew("xmppd_stanzas_sent_total", 1, stream="c2s", kind="message")
    grew("xmppd_stanzas_sent_total", 1, stream="c2s", kind="iq")
    grew("xmppd_stanzas_routed_total", 5)
    assert sample(after, "xmppd_sessions") >= 2
    assert sample(after, "xmppd_connections", kind="c2s") >= 2
    assert sample(after, "xmppd_connections", kind="websocket") == 1
    assert sample(after, "xmppd_offline_messages", host="localhost") >= 1
    assert sample(after, "xmppd_offline_users", host="localhost") >= 1
    grew("xmppd_archive_writes_total", 3)  # alice->bob both sides, alice->carol sent copy
    grew("xmppd_storage_latency_seconds_count", 1, operation="write")
    grew("xmppd_storage_latency_seconds_count", 1, operation="lookup")  # credentials
    assert sample(after, "xmppd_reactor_lag_seconds_count") >= 1
    assert sample(after, "process_resident_memory_bytes") > 0


# -- federation: streams by state, stanzas over s2s ------------------------------------------------
A, B = "a.test", "b.test"


def fed_server(tmp: Path, ca: CertAuthority, url: str, domain: str, port: int, peer: str,
               peer_port: int) -> ServerProcess:
    listeners: list[dict[str, Any]] = [
        {"type": "c2s", "port": 0, "address": "127.0.0.1"},
        {"type": "s2s", "port": port, "address": "127.0.0.1"},
        {"type": "http", "port": 0, "address": "127.0.0.1"}]
    return ServerProcess(tmp, url, ca, domains=(domain,), config={
        "listeners": listeners, "federation": federation_config(peer, peer_port)})


def test_s2s_streams_and_stanzas(ca: CertAuthority, tmp_path: Path) -> None:
    pa, pb = free_port(), free_port()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with database("sqlite", tmp_path / "a") as ua, database("sqlite", tmp_path / "b") as ub:
        a = fed_server(tmp_path / "a", ca, ua, A, pa, B, pb)
        b = fed_server(tmp_path / "b", ca, ub, B, pb, A, pa)
        a.start()
        b.start()
        try:
            alice, _ = a.new_user("alice", A)
            bob, _ = b.new_user("bob", B)

            async def body() -> None:
                ca_ = await connect(a, alice + "/a")
                cb = await connect(b, bob + "/b")
                ca_.send_message(mto=bob + "/b", mbody="over there", mtype="chat")
                assert (await cb.next_message(timeout=20))["body"] == "over there"
                await ca_.close()
                await cb.close()

            run(body(), timeout=120)
            sa = parse(fetch(a.ports["http"][0]).body)  # loopback, no token: the default
            sb = parse(fetch(b.ports["http"][0]).body)
        finally:
            for s in (a, b):
                assert s.stop() == 0
                assert not s.tracebacks(), s.tracebacks()
    assert sample(sa, "xmppd_s2s_streams", direction="out", state="established") == 1
    assert sample(sa, "xmppd_connections", kind="s2s_out") == 1
    assert sample(sa, "xmppd_stanzas_sent_total", stream="s2s", kind="message") >= 1
    assert sample(sb, "xmppd_s2s_streams", direction="in", state="established") >= 1
    assert sample(sb, "xmppd_connections", kind="s2s_in") >= 1
    assert sample(sb, "xmppd_stanzas_received_total", stream="s2s", kind="message") >= 1
    assert sample(sb, "xmppd_stanzas_sent_total", stream="c2s", kind="message") >= 1
