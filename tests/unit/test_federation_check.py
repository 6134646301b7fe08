"""``xmppd check`` for federation: DNS records and certificates a domain needs."""

from __future__ import annotations

from pathlib import Path

from federation.check import check_dns, check_federation, lookup_srv
from tests.support.ca import CertAuthority
from tests.support.fakedns import FakeDNS
from xmppd.config import from_dict
from xmppd.tls import generate_self_signed


def test_lookup_srv_parses_answers() -> None:
    fake = FakeDNS({"_xmpp-server._tcp.chat.example": ("xmpp.chat.example", 5269)},
                   {"chat.example": "127.0.0.1"})
    try:
        assert lookup_srv("_xmpp-server._tcp.chat.example", 2, "127.0.0.1", fake.port) == [
            (0, 0, 5269, "xmpp.chat.example")]
        assert lookup_srv("_xmpp-server._tcp.other.org", 2, "127.0.0.1", fake.port) == []
    finally:
        fake.close()
    # nobody answering is a failed lookup, not "no records"
    assert lookup_srv("_xmpp-server._tcp.chat.example", 0.3, "127.0.0.1", fake.port) is None


def test_private_names_are_not_looked_up() -> None:
    for domain in ("localhost", "a.test", "x.example", "nowhere.invalid", "192.0.2.1"):
        assert check_dns(domain) == []


def _cfg(tmp: Path, domain: str, crt: Path, key: Path, **fed: object):  # type: ignore[no-untyped-def]
    return from_dict({"hosts": {domain: {"cert": str(crt), "key": str(key)}},
                      "storage": {"url": "sqlite://"}, "federation": fed}, base_dir=str(tmp))


def test_certificates(tmp_path: Path) -> None:
    ca = CertAuthority.create(tmp_path / "ca")
    crt, key = ca.issue("a.test", tmp_path / "certs")
    errors, warnings = check_federation(_cfg(tmp_path, "a.test", crt, key,
                                             ca_file=str(ca.ca_file)), resolve_dns=False)
    assert errors == [] and warnings == []
    # the system store does not know the test CA: peers would need dialback
    errors, warnings = check_federation(_cfg(tmp_path, "a.test", crt, key), resolve_dns=False)
    assert errors == [] and len(warnings) == 1 and "not trusted by the system store" in (
        warnings[0]) and "dialback" in warnings[0]
    # a certificate for another name
    generate_self_signed("b.test", crt, key, issuer_cert=ca.cert, issuer_key=ca.key)
    _, warnings = check_federation(_cfg(tmp_path, "a.test", crt, key,
                                        ca_file=str(ca.ca_file)), resolve_dns=False)
    assert warnings == [f"a.test: certificate {crt} names neither a.test nor "
                        "_xmpp-server.a.test"]


def test_broken_ca_file_and_missing_listener(tmp_path: Path) -> None:
    ca = CertAuthority.create(tmp_path / "ca")
    crt, key = ca.issue("a.test", tmp_path / "certs")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    errors, _ = check_federation(_cfg(tmp_path, "a.test", crt, key, ca_file=str(bad)),
                                 resolve_dns=False)
    assert errors and errors[0].startswith("federation.ca_file: cannot load")
    cfg = from_dict({"hosts": {"a.test": {"cert": str(crt), "key": str(key)}},
                     "listeners": [{"type": "c2s", "port": 5222}],
                     "federation": {"ca_file": str(ca.ca_file)}})
    _, warnings = check_federation(cfg, resolve_dns=False)
    assert any("no s2s or s2s_tls listener" in w for w in warnings)
    off = from_dict({"federation": {"enabled": False}})
    assert check_federation(off) == ([], [])
