"""Peer certificate rules for s2s (RFC 6120 §13.7.2, RFC 6125, XEP-0178) on generated
certificates: chain, validity, extended key usage and the three identifier types."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from federation.verify import (
    PeerCertificate,
    check_eku,
    names_domain,
    trust_store,
    verify_chain,
    xmpp_addrs,
)

NOW = datetime.datetime.now(datetime.UTC)
ID_ON_DNSSRV = ObjectIdentifier("1.3.6.1.5.5.7.8.7")
ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")


def _der(tag: int, text: str) -> bytes:
    body = text.encode()
    assert len(body) < 128
    return bytes([tag, len(body)]) + body


class CA:
    def __init__(self, name: str = "Unit CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=10))
            .not_valid_after(NOW + datetime.timedelta(days=10))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256()))

    def write(self, folder: Path) -> str:
        path = folder / "ca.pem"
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return str(path)

    def leaf(self, dns: tuple[str, ...] = (), srv: tuple[str, ...] = (),
             xmpp: tuple[str, ...] = (),
             eku: tuple[ObjectIdentifier, ...] | None = (ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH),
             days: tuple[int, int] = (-1, 5), cn: str = "leaf") -> x509.Certificate:
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.OtherName(ID_ON_DNSSRV, _der(0x16, s)) for s in srv]
        names += [x509.OtherName(ID_ON_XMPPADDR, _der(0x0C, a)) for a in xmpp]
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(self.cert.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(NOW + datetime.timedelta(days=days[0]))
             .not_valid_after(NOW + datetime.timedelta(days=days[1])))
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        if eku is not None:
            b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        return b.sign(self.key, hashes.SHA256())


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


@pytest.fixture
def store(ca: CA, tmp_path: Path):  # type: ignore[no-untyped-def]
    return trust_store(ca.write(tmp_path))


def test_dns_id_exact_and_case_insensitive(ca: CA) -> None:
    cert = ca.leaf(dns=("Example.ORG",))
    assert names_domain(cert, "example.org")
    assert not names_domain(cert, "other.org")
    assert not names_domain(cert, "sub.example.org")


def test_wildcard_covers_one_label_only(ca: CA) -> None:
    cert = ca.leaf(dns=("*.example.org",))
    assert names_domain(cert, "conference.example.org")
    assert not names_domain(cert, "example.org")  # RFC 6125 §6.4.3: not the parent
    assert not names_domain(cert, "a.b.example.org")  # nor two labels deep
    partial = ca.leaf(dns=("x*.example.org",))
    assert not names_domain(partial, "xy.example.org")  # partial-label wildcards: never
    both = ca.leaf(dns=("*.example.org", "example.org"))
    assert names_domain(both, "example.org") and names_domain(both, "muc.example.org")


def test_srv_id(ca: CA) -> None:
    cert = ca.leaf(srv=("_xmpp-server.example.org",))
    assert names_domain(cert, "example.org")
    assert not names_domain(cert, "example.net")
    client_only = ca.leaf(srv=("_xmpp-client.example.org",))
    assert not names_domain(client_only, "example.org")  # the wrong service


def test_xmpp_addr(ca: CA) -> None:
    cert = ca.leaf(xmpp=("example.org",))
    assert xmpp_addrs(cert) == ["example.org"]
    assert names_domain(cert, "example.org")
    assert not names_domain(cert, "example.com")


def test_common_name_is_not_an_identity(ca: CA) -> None:
    cert = ca.leaf(cn="example.org", dns=("other.org",))
    assert not names_domain(cert, "example.org")


def test_mismatch_with_trusted_chain_is_not_valid_for_domain(ca: CA, store: object) -> None:
    peer = PeerCertificate(verify_chain([ca.leaf(dns=("example.org",))], store, "client"))
    assert peer.trusted
    assert peer.valid_for("example.org")
    assert not peer.valid_for("example.net")
    assert peer.describe("example.net") == "certificate does not name example.net"


def test_untrusted_issuer(store: object) -> None:
    other = CA("Somebody else")
    res = verify_chain([other.leaf(dns=("example.org",))], store, "client")
    assert not res.trusted and "unable to get local issuer" in res.error
    assert not PeerCertificate(res).valid_for("example.org")


def test_expired_and_not_yet_valid(ca: CA, store: object) -> None:
    expired = verify_chain([ca.leaf(dns=("example.org",), days=(-5, -1))], store, "client")
    assert not expired.trusted and "expired" in expired.error
    future = verify_chain([ca.leaf(dns=("example.org",), days=(2, 5))], store, "client")
    assert not future.trusted and "not yet valid" in future.error


def test_server_auth_only_eku_is_accepted_both_ways(ca: CA, store: object) -> None:
    cert = ca.leaf(dns=("example.org",), eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
    # a peer connecting to us is a TLS client; many CAs now issue serverAuth only
    assert verify_chain([cert], store, "client").trusted
    assert verify_chain([cert], store, "server").trusted


def test_client_auth_only_eku(ca: CA, store: object) -> None:
    cert = ca.leaf(dns=("example.org",), eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    assert verify_chain([cert], store, "client").trusted
    res = verify_chain([cert], store, "server")  # but a server we connect to needs it
    assert not res.trusted and "extended key usage" in res.error


def test_wrong_eku_is_refused(ca: CA, store: object) -> None:
    cert = ca.leaf(dns=("example.org",), eku=(ExtendedKeyUsageOID.CODE_SIGNING,
                                              ExtendedKeyUsageOID.EMAIL_PROTECTION))
    for role in ("client", "server"):
        res = verify_chain([cert], store, role)  # type: ignore[arg-type]
        assert not res.trusted and "extended key usage" in res.error


def test_no_eku_extension_is_unrestricted(ca: CA, store: object) -> None:
    cert = ca.leaf(dns=("example.org",), eku=None)
    assert check_eku(cert, "server") == ""
    assert verify_chain([cert], store, "server").trusted


def test_intermediate_sent_by_peer(tmp_path: Path) -> None:
    root = CA("Root")
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Intermediate")])
    inter = (x509.CertificateBuilder().subject_name(inter_name).issuer_name(root.cert.subject)
             .public_key(inter_key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(NOW - datetime.timedelta(days=1))
             .not_valid_after(NOW + datetime.timedelta(days=5))
             .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
             .sign(root.key, hashes.SHA256()))
    middle = CA.__new__(CA)
    middle.key, middle.cert = inter_key, inter
    leaf = middle.leaf(dns=("example.org",))
    store = trust_store(root.write(tmp_path))
    assert not verify_chain([leaf], store, "client").trusted  # intermediate missing
    assert verify_chain([leaf, inter], trust_store(root.write(tmp_path)), "client").trusted


def test_no_certificate() -> None:
    res = verify_chain([], trust_store(), "client")
    assert not res.trusted and res.error == "no certificate presented"
