"""Peer certificate checks for server-to-server streams (RFC 6120 §13.7.2, RFC 6125).

Two questions, answered separately:

* Is the chain trustworthy? It must build to a trust anchor (``federation.ca_file`` or the
  system store), every certificate must be within its validity period, and the leaf's
  extended key usage must allow the role the peer plays. RFC 6120 §13.7.1.2 asks for
  id-kp-serverAuth and id-kp-clientAuth, but many public CAs now issue serverAuth-only
  certificates, so a peer that connects to us (the TLS client) may present either; a peer we
  connect to (the TLS server) must have serverAuth. A leaf without the extension is allowed
  for both (RFC 5280 §4.2.1.12). OpenSSL's own purpose check is therefore not used: the
  chain is verified without a purpose and the EKU is checked here.
* Does it name the domain? RFC 6120 §13.7.2.1 / RFC 6125 §6: the reference identifiers are
  the SRV-ID ``_xmpp-server.<domain>``, the DNS-ID ``<domain>`` (one left-most wildcard label
  allowed, RFC 6125 §6.4.3) and the XmppAddr ``id-on-xmppAddr`` (RFC 6120 §13.7.1.4). The
  first two are matched by service-identity; the Common Name is never used (RFC 6125 §6.4.4
  applies only when no subjectAltName of a supported type is present, and every certificate
  a public CA issues today has one).
"""

from __future__ import annotations

import datetime
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from OpenSSL import SSL, crypto
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import extract_patterns
from service_identity.hazmat import DNS_ID, SRV_ID, ServiceID, verify_service_identity

from xmppd.jid import JIDError, prepare_domain

ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")
Role = Literal["client", "server"]  # the TLS role the *peer* played


@dataclass(frozen=True)
class ChainResult:
    """Outcome of chain validation; ``error`` says why it is not trusted."""

    trusted: bool
    error: str = ""
    leaf: x509.Certificate | None = None


def trust_store(ca_file: str = "") -> crypto.X509Store:
    """Trust anchors: the given PEM bundle, or the system's default store."""
    store = crypto.X509Store()
    if ca_file:
        store.load_locations(ca_file)
        return store
    paths = ssl.get_default_verify_paths()
    cafile: str | None = paths.cafile or paths.openssl_cafile
    capath: str | None = paths.capath or paths.openssl_capath
    cafile = cafile if cafile and os.path.isfile(cafile) else None
    capath = capath if capath and os.path.isdir(capath) else None
    if cafile or capath:
        store.load_locations(cafile, capath)
    return store


def check_eku(cert: x509.Certificate, role: Role) -> str:
    """'' if the extended key usage fits the role the peer played in TLS, else a reason."""
    try:
        ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return ""
    usages = set(ekus)
    if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages:
        return ""
    if ExtendedKeyUsageOID.SERVER_AUTH in usages:
        return ""  # serverAuth alone is fine whichever side the peer is on
    if role == "client" and ExtendedKeyUsageOID.CLIENT_AUTH in usages:
        return ""
    return "certificate not issued for TLS server authentication (extended key usage)"


def verify_chain(chain: Sequence[x509.Certificate], store: crypto.X509Store,
                 role: Role, at: datetime.datetime | None = None) -> ChainResult:
    """Validate ``chain`` (leaf first, then any intermediates the peer sent)."""
    if not chain:
        return ChainResult(False, "no certificate presented")
    leaf = chain[0]
    problem = check_eku(leaf, role)
    if problem:
        return ChainResult(False, problem, leaf)
    if at is not None:
        store.set_time(at)
    intermediates = [crypto.X509.from_cryptography(c) for c in chain[1:]]
    ctx = crypto.X509StoreContext(store, crypto.X509.from_cryptography(leaf), intermediates)
    try:
        ctx.verify_certificate()
    except crypto.X509StoreContextError as exc:
        return ChainResult(False, str(exc), leaf)
    return ChainResult(True, "", leaf)


def xmpp_addrs(cert: x509.Certificate) -> list[str]:
    """id-on-xmppAddr values (UTF8String inside an otherName, RFC 6120 §13.7.1.4)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[str] = []
    for other in sans.get_values_for_type(x509.OtherName):
        if other.type_id == ID_ON_XMPPADDR:
            value = _der_utf8(other.value)
            if value is not None:
                out.append(value)
    return out


def _der_utf8(der: bytes) -> str | None:
    """Decode one DER UTF8String (tag 0x0c) - all an xmppAddr ever is."""
    if len(der) < 2 or der[0] != 0x0C:
        return None
    length, pos = der[1], 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or len(der) < 2 + n:
            return None
        length, pos = int.from_bytes(der[2:2 + n], "big"), 2 + n
    if len(der) != pos + length:
        return None
    try:
        return der[pos:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def names_domain(cert: x509.Certificate, domain: str) -> bool:
    """RFC 6120 §13.7.2.1: does the certificate identify ``domain`` as an XMPP server?"""
    try:
        domain = prepare_domain(domain)
    except JIDError:
        return False
    try:
        patterns = extract_patterns(cert)
    except (CertificateError, ValueError):
        patterns = []
    candidates: list[ServiceID] = []
    try:
        candidates.append(SRV_ID(f"_xmpp-server.{domain}"))
        candidates.append(DNS_ID(domain))
    except ValueError:
        pass  # IP literals and other names that cannot be DNS reference identifiers
    for ref in candidates:
        try:
            verify_service_identity(patterns, obligatory_ids=[ref], optional_ids=[])
            return True
        except (VerificationError, CertificateError):
            continue
    for addr in xmpp_addrs(cert):
        try:
            if prepare_domain(addr) == domain:
                return True
        except JIDError:
            continue
    return False


@dataclass
class PeerCertificate:
    """What a TLS handshake told us about the peer; identity checks are per domain."""

    chain: ChainResult

    @property
    def trusted(self) -> bool:
        return self.chain.trusted

    def valid_for(self, domain: str) -> bool:
        """Trusted chain and naming ``domain`` (the condition for SASL EXTERNAL, XEP-0178)."""
        leaf = self.chain.leaf
        return self.chain.trusted and leaf is not None and names_domain(leaf, domain)

    def describe(self, domain: str) -> str:
        if not self.chain.trusted:
            return self.chain.error or "untrusted"
        if not self.valid_for(domain):
            return f"certificate does not name {domain}"
        return "valid"


def peer_certificate(conn: SSL.Connection, store: crypto.X509Store, role: Role
                     ) -> PeerCertificate:
    """Collect the peer's chain from a finished handshake and validate it."""
    chain: list[x509.Certificate] = []
    leaf = conn.get_peer_certificate(as_cryptography=True)
    if leaf is not None:
        chain.append(leaf)
        for c in conn.get_peer_cert_chain(as_cryptography=True) or []:
            if c != leaf:
                chain.append(c)
    return PeerCertificate(verify_chain(chain, store, role))
