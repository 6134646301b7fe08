"""Brute-force bans and user enumeration, through real sockets (issue 15, A5 and A6).

Several client addresses come from loopback: any 127.x.y.z is a local address on Linux.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.client import run
from tests.support.raw import NS_SASL, RawStream, q
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp("guard"), "sqlite", ca, config={
        "auth": {"ban_after": 3, "account_ban_after": 4, "ban_time": 600.0,
                 "throttle_after": 100, "max_unauthenticated_per_ip": 5,
                 "max_failures_per_stream": 50},
    })


async def tls_stream(srv: ServerProcess, source: str) -> RawStream:
    raw = await RawStream.open(srv.c2s_port, source=source)
    await raw.open_stream()
    await raw.starttls(str(srv.ca.ca_file))
    await raw.open_stream()
    return raw


def outcome(el: ET.Element) -> str:
    """'success' or the SASL failure condition."""
    if el.tag == q(NS_SASL, "success"):
        return "success"
    assert el.tag == q(NS_SASL, "failure"), ET.tostring(el)
    return next(c.tag.split("}")[1] for c in el if not c.tag.endswith("}text"))


async def plain(srv: ServerProcess, source: str, user: str, password: str) -> str:
    raw = await tls_stream(srv, source)
    try:
        return outcome(await raw.auth_plain(user, password))
    finally:
        raw.close()


def test_a_banned_address_is_refused_even_the_right_password(srv: ServerProcess) -> None:
    jid, pw = srv.new_user("target")
    user = jid.split("@")[0]
    attacker = "127.0.0.11"

    async def body() -> None:
        for _ in range(3):
            assert await plain(srv, attacker, f"nobody{secrets.token_hex(3)}", "x") == (
                "not-authorized")
        # Banned now: the right password, for any account, gets temporary-auth-failure.
        assert await plain(srv, attacker, user, pw) == "temporary-auth-failure"
        raw = await tls_stream(srv, attacker)
        await raw.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>"
                       f"{base64.b64encode(b'n,,n=' + user.encode() + b',r=abc').decode()}"
                       "</auth>")
        assert outcome(await raw.read()) == "temporary-auth-failure"
        raw.close()
        assert await plain(srv, "127.0.0.12", user, pw) == "success"  # another address

    run(body())
    bans = [line for line in srv.log().splitlines() if "AUTH-BAN" in line]
    assert len(bans) == 1 and "AUTH-BAN address 127.0.0.11 from 127.0.0.11:" in bans[0]
    assert fail2ban_host(bans[0]) == "127.0.0.11"


def fail2ban_host(line: str) -> str | None:
    """What contrib/fail2ban/filter.d/xmppd.conf's failregex takes from a log line, with
    fail2ban's <HOST> as an address group."""
    import re
    from pathlib import Path

    conf = Path(__file__).parents[2] / "contrib" / "fail2ban" / "filter.d" / "xmppd.conf"
    failregex = next(line.split("=", 1)[1].strip() for line in conf.read_text().splitlines()
                     if line.startswith("failregex"))
    m = re.search(failregex.replace("<HOST>", r"(?P<host>[0-9a-fA-F.:]+)"), line)
    return m.group("host") if m else None


def test_another_accounts_success_does_not_reset_the_count(srv: ServerProcess) -> None:
    own, own_pw = srv.new_user("own")
    attacker = "127.0.0.13"

    async def body() -> None:
        for i in range(3):
            if i == 2:
                assert await plain(srv, attacker, own.split("@")[0], own_pw) == "success"
            assert await plain(srv, attacker, "victim", f"guess{i}") == "not-authorized"
        assert await plain(srv, attacker, own.split("@")[0], own_pw) == (
            "temporary-auth-failure")

    run(body())


def test_parallel_guesses_do_not_slip_past_the_bar(srv: ServerProcess) -> None:
    """20 connections guess at once (PLAIN verifies in a thread): at most ban_after (3)
    guesses are checked at all."""
    attacker = "127.0.0.14"

    async def body() -> None:
        token = base64.b64encode(b"\0victim2\0wrong").decode()
        results: list[str] = []
        for _wave in range(5):  # 4 at a time: 5 unauthenticated connections per address
            streams = [await tls_stream(srv, attacker) for _ in range(4)]
            for s in streams:
                await s.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>")
            results += [outcome(el) for el in await asyncio.gather(*(s.read() for s in streams))]
            for s in streams:
                s.close()
        assert len(results) == 20
        assert results.count("not-authorized") <= 3, results
        assert results.count("temporary-auth-failure") >= 17, results

    run(body())


def test_an_account_guessed_from_many_addresses_is_locked_except_from_its_own(
        srv: ServerProcess) -> None:
    jid, pw = srv.new_user("alice")
    user = jid.split("@")[0]

    async def body() -> None:
        assert await plain(srv, "127.0.0.20", user, pw) == "success"  # alice's own address
        for i in range(4):
            assert await plain(srv, f"127.0.1.{i + 1}", user, "guess") == "not-authorized"
        assert await plain(srv, "127.0.1.9", user, pw) == "temporary-auth-failure"
        assert await plain(srv, "127.0.0.20", user, pw) == "success"
        other, other_pw = srv.new_user("bob")
        assert await plain(srv, "127.0.1.9", other.split("@")[0], other_pw) == "success"

    run(body())


def test_unauthenticated_connections_per_address_are_capped(srv: ServerProcess) -> None:
    jid, pw = srv.new_user("cap")
    source = "127.0.0.30"

    async def body() -> None:
        waiting = [await tls_stream(srv, source) for _ in range(5)]
        extra = await RawStream.open(srv.c2s_port, source=source)
        assert await extra.stream_error() == "policy-violation"
        assert outcome(await waiting[0].auth_plain(jid.split("@")[0], pw)) == "success"
        again = await tls_stream(srv, source)  # the authenticated one no longer counts
        for s in [*waiting, again]:
            s.close()

    run(body())


def scram_first(srv: ServerProcess, user: str) -> dict[str, str]:
    async def body() -> dict[str, str]:
        raw = await tls_stream(srv, "127.0.0.40")
        first = base64.b64encode(f"n,,n={user},r=abcdef".encode()).decode()
        await raw.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>")
        el = await raw.read()
        raw.close()
        assert el.tag == q(NS_SASL, "challenge")
        server_first = base64.b64decode(el.text or "").decode()
        return dict(part.split("=", 1) for part in server_first.split(","))

    return run(body())


def test_unknown_accounts_get_a_salt_like_a_real_one(srv: ServerProcess) -> None:
    """Regression (A6): the fake salt was 16 bytes and a real one 32, so one request told
    whether an account exists."""
    jid, _ = srv.new_user("real")
    real = scram_first(srv, jid.split("@")[0])
    fake = scram_first(srv, "nosuchuser" + secrets.token_hex(3))
    assert len(base64.b64decode(fake["s"])) == len(base64.b64decode(real["s"])) == 32
    assert fake["i"] == real["i"]
    assert scram_first(srv, "nosuchuser1")["s"] == scram_first(srv, "nosuchuser1")["s"]
