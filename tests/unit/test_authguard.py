"""AuthGuard's rules, on a fake clock (the integration tests drive them through sockets)."""

from __future__ import annotations

from twisted.internet.task import Clock

from xmppd.authguard import AuthGuard, GuardPolicy, address_key

POLICY = GuardPolicy(ban_after=3, account_ban_after=5, ban_window=60.0, ban_time=100.0,
                     max_unauthenticated_per_ip=2, exempt_networks=("10.0.0.0/8",))


def guard() -> tuple[AuthGuard, Clock]:
    clock = Clock()
    return AuthGuard(POLICY, clock.seconds), clock


def fail(g: AuthGuard, ip: str, account: str) -> None:
    attempt = g.begin(ip, account)
    assert attempt is not None
    attempt.failed()


def test_an_address_is_banned_for_every_account_correct_passwords_included() -> None:
    g, clock = guard()
    for user in ("a@x", "b@x", "c@x"):
        fail(g, "192.0.2.1", user)
    assert g.begin("192.0.2.1", "d@x") is None  # any account, before any password check
    assert g.refused("192.0.2.1") is not None
    assert [(b.kind, b.key) for b in g.bans()] == [("address", "192.0.2.1")]
    assert g.begin("192.0.2.2", "d@x") is not None  # other addresses are not affected
    clock.advance(99)
    assert g.refused("192.0.2.1") is not None
    clock.advance(2)
    assert g.refused("192.0.2.1") is None and g.bans() == []


def test_another_accounts_success_resets_nothing() -> None:
    g, _ = guard()
    fail(g, "192.0.2.1", "victim@x")
    fail(g, "192.0.2.1", "victim@x")
    ok = g.begin("192.0.2.1", "attacker@x")
    assert ok is not None
    ok.succeeded()
    fail(g, "192.0.2.1", "victim@x")
    assert g.begin("192.0.2.1", "victim@x") is None


def test_failures_outside_the_window_are_forgotten() -> None:
    g, clock = guard()
    fail(g, "192.0.2.1", "a@x")
    fail(g, "192.0.2.1", "a@x")
    clock.advance(61)
    fail(g, "192.0.2.1", "a@x")
    fail(g, "192.0.2.1", "a@x")
    assert g.begin("192.0.2.1", "a@x") is not None


def test_attempts_in_flight_count_until_they_end() -> None:
    """Parallel attempts (PLAIN verifies in a thread) cannot slip past the bar."""
    g, _ = guard()
    started = [g.begin("192.0.2.1", f"u{i}@x") for i in range(5)]
    assert [a is not None for a in started] == [True, True, True, False, False]
    started[0].succeeded()  # type: ignore[union-attr]
    assert g.begin("192.0.2.1", "u9@x") is not None


def test_an_account_is_locked_from_any_address_but_not_from_its_own() -> None:
    g, _ = guard()
    home = g.begin("198.51.100.7", "alice@x")
    assert home is not None
    home.succeeded()  # alice's usual address
    for i in range(5):
        fail(g, f"203.0.113.{i}", "alice@x")  # five addresses, one failure each
    assert g.begin("203.0.113.99", "alice@x") is None
    assert g.refused("203.0.113.99", "alice@x") is not None
    assert ("account", "alice@x") in [(b.kind, b.key) for b in g.bans()]
    assert g.begin("198.51.100.7", "alice@x") is not None  # alice herself still gets in
    assert g.begin("203.0.113.99", "bob@x") is not None


def test_ipv6_addresses_are_grouped_by_64() -> None:
    g, _ = guard()
    for i in range(3):
        fail(g, f"2001:db8:1:2::{i + 1}", f"u{i}@x")
    assert g.refused("2001:db8:1:2:ffff::9") is not None
    assert g.refused("2001:db8:1:3::1") is None
    assert address_key("::ffff:192.0.2.5") == "192.0.2.5"


def test_lift() -> None:
    g, _ = guard()
    for _ in range(3):
        fail(g, "192.0.2.1", "a@x")
    assert g.lift("192.0.2.1")
    assert g.refused("192.0.2.1") is None and g.bans() == []
    assert g.begin("192.0.2.1", "a@x") is not None  # its failures are forgotten too
    assert not g.lift("192.0.2.200")


def test_unauthenticated_connections_per_address() -> None:
    g, _ = guard()
    assert g.connection_opened("192.0.2.1") and g.connection_opened("192.0.2.1")
    assert not g.connection_opened("192.0.2.1")
    assert g.connection_opened("192.0.2.2")
    g.connection_done("192.0.2.1")
    assert g.connection_opened("192.0.2.1")


def test_exempt_networks() -> None:
    g, _ = guard()
    for _ in range(10):
        fail(g, "10.1.2.3", "a@x")
        assert g.connection_opened("10.1.2.3")
    assert g.refused("10.1.2.3", "a@x") is None and g.bans() == []


def test_abandoned_attempts_release_their_place_without_counting() -> None:
    g, _ = guard()
    for _ in range(5):
        attempt = g.begin("192.0.2.1", "a@x")
        assert attempt is not None
        attempt.abandoned()
        attempt.failed()  # too late: an attempt ends once
    assert g.begin("192.0.2.1", "a@x") is not None
