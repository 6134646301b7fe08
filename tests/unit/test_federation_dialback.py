"""XEP-0185 keys (with the XEP's own worked examples), the secret file, dialback wire format,
and resolution helpers (RFC 2782 ordering, XEP-0368 mixing, connect overrides)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer
from twisted.names import dns
from twisted.names.error import DNSNameError

from federation import dialback as db
from federation import resolve as resolve_mod
from federation.resolve import Target, order_srv, parse_connect, resolve
from xmppd.config import ConfigError, from_dict
from xmppd.xmlparser import parse_fragment


def test_xep0185_example() -> None:
    # XEP-0185 §3: secret s3cr3tf0rd14lb4ck, receiving xmpp.example.com,
    # originating example.org, stream ID D60000229F.
    key = db.dialback_key("s3cr3tf0rd14lb4ck", "xmpp.example.com", "example.org", "D60000229F")
    assert key == "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"


def test_xep0220_examples() -> None:
    # XEP-0220 §2.1.1 (capulet's secret) and §2.2.2 (montague's secret)
    assert db.dialback_key("s3cr3tf0rd14lb4ck", "montague.example", "capulet.example",
                           "D60000229F") == (
        "b4835385f37fe2895af6c196b59097b16862406db80559900d96bf6fa7d23df3")
    assert db.dialback_key("d14lb4ck43v3r", "capulet.example", "montague.example",
                           "417GAF25") == (
        "225cc5aa6a071133249d25fef42ae516fc7a86c523aa1c6980a7f73e784c972d")


def test_key_matches_is_exact_about_every_input() -> None:
    key = db.dialback_key("secret", "r.example", "o.example", "id1")
    assert db.key_matches("secret", "r.example", "o.example", "id1", f"  {key.upper()}\n")
    assert not db.key_matches("other", "r.example", "o.example", "id1", key)
    assert not db.key_matches("secret", "o.example", "r.example", "id1", key)
    assert not db.key_matches("secret", "r.example", "o.example", "id2", key)
    assert not db.key_matches("secret", "r.example", "o.example", "id1", "")


def test_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    assert db.load_secret("configured", tmp_path) == "configured"
    first = db.load_secret("", tmp_path)
    assert len(first) == 64 and db.load_secret("", tmp_path) == first
    assert (tmp_path / db.SECRET_FILE).stat().st_mode & 0o777 == 0o600


def test_wire_format_parses_back() -> None:
    ns = f" xmlns:db='{db.NS_DB}'"
    wrap = f"<x{ns}>{{}}</x>"
    el = parse_fragment(wrap.format(db.result_xml("a.example", "b.example", key="k&<")),
                        "jabber:server")
    res = el.children[0]
    assert (res.uri, res.name) == (db.NS_DB, "result")
    assert res["from"] == "a.example" and str(res) == "k&<"
    err = parse_fragment(wrap.format(db.verify_xml("a.example", "b.example", "i1",
                                                   type_="error", error="item-not-found")),
                         "jabber:server").children[0]
    assert err["type"] == "error" and err["id"] == "i1"
    assert db.error_condition(err) == "item-not-found"


def test_parse_connect() -> None:
    assert parse_connect("127.0.0.1:5269") == Target("127.0.0.1", 5269, False)
    assert parse_connect("tls://xmpp.example.org:5270") == Target("xmpp.example.org", 5270,
                                                                  True)
    assert parse_connect("[::1]:5269") == Target("::1", 5269, False)
    for bad in ("example.org", "example.org:x", "example.org:0", ":5269", "h:70000"):
        with pytest.raises(ValueError):
            parse_connect(bad)


def test_config_rejects_bad_overrides() -> None:
    with pytest.raises(ConfigError, match=r"federation\.domains\.b\.example\.connect"):
        from_dict({"federation": {"domains": {"b.example": {"connect": "nope"}}}})
    with pytest.raises(ConfigError, match=r"federation\.dialback"):
        from_dict({"federation": {"dialback": False}})
    cfg = from_dict({"federation": {"domains": {"B.Example": {"connect": "h:1"}}}})
    assert "b.example" in cfg.federation.domains  # keys are prepared like JID domains
    assert cfg.federation.enabled
    assert {lc.type for lc in cfg.listeners} >= {"s2s", "s2s_tls"}


def test_srv_order_priority_then_weight() -> None:
    t = [Target(f"h{i}", 1, False) for i in range(4)]
    recs = [(20, 0, t[0]), (10, 0, t[1]), (10, 100, t[2]), (30, 5, t[3])]
    for seed in range(20):
        out = order_srv(recs, random.Random(seed))
        assert out[2:] == [t[0], t[3]]  # priorities strictly ascending
        assert set(out[:2]) == {t[1], t[2]}
    # weight 100 against 0: the heavy one first nearly always (RFC 2782)
    firsts = [order_srv(recs, random.Random(s))[0] for s in range(200)]
    assert firsts.count(t[2]) > 180


class FakeDNS:
    def __init__(self, records: dict[str, list[tuple[int, int, int, str]]]) -> None:
        self.records = records
        self.asked: list[str] = []

    def __call__(self, name: str, timeout: Any = None) -> defer.Deferred[Any]:
        self.asked.append(name)
        if name not in self.records:
            return defer.fail(DNSNameError(name))
        answers = [dns.RRHeader(name.encode(), dns.SRV, payload=dns.Record_SRV(
            p, w, port, b"" if host == "." else host.encode()))  # "." is the root name
            for p, w, port, host in self.records[name]]
        return defer.succeed((answers, [], []))


def _resolve(monkeypatch: pytest.MonkeyPatch, fake: FakeDNS, domain: str,
             connect: str = "") -> list[Target]:
    monkeypatch.setattr(resolve_mod.dns_client, "lookupService", fake)
    out: list[Any] = []
    defer.Deferred.fromCoroutine(resolve(domain, connect)).addBoth(out.append)
    assert out and isinstance(out[0], list), out
    return out[0]


def test_resolve_mixes_direct_tls_and_starttls(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDNS({
        "_xmpps-server._tcp.example.org": [(5, 0, 5270, "tls.example.org")],
        "_xmpp-server._tcp.example.org": [(10, 0, 5269, "xmpp.example.org"),
                                          (1, 0, 15269, "first.example.org")],
    })
    assert _resolve(monkeypatch, fake, "example.org") == [
        Target("first.example.org", 15269, False), Target("tls.example.org", 5270, True),
        Target("xmpp.example.org", 5269, False)]


def test_resolve_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    # no records at all: the domain itself on 5269 (RFC 6120 §3.2.2)
    assert _resolve(monkeypatch, FakeDNS({}), "example.net") == [
        Target("example.net", 5269, False)]
    # "." for direct TLS but STARTTLS records present: those only, no A fallback
    fake = FakeDNS({"_xmpps-server._tcp.example.com": [(0, 0, 0, ".")],
                    "_xmpp-server._tcp.example.com": [(0, 0, 5269, "x.example.com")]})
    assert _resolve(monkeypatch, fake, "example.com") == [Target("x.example.com", 5269, False)]
    # "." for both: the service is not offered (RFC 2782)
    fake = FakeDNS({"_xmpps-server._tcp.nofed.example": [(0, 0, 0, ".")],
                    "_xmpp-server._tcp.nofed.example": [(0, 0, 0, ".")]})
    assert _resolve(monkeypatch, fake, "nofed.example") == []
    # special-use names and overrides never touch DNS
    fake = FakeDNS({})
    assert _resolve(monkeypatch, fake, "nowhere.invalid") == []
    assert _resolve(monkeypatch, fake, "b.example", "tls://10.0.0.1:5270") == [
        Target("10.0.0.1", 5270, True)]
    assert _resolve(monkeypatch, fake, "192.0.2.7") == [Target("192.0.2.7", 5269, False)]
    assert fake.asked == []
