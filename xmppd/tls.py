"""TLS contexts per served domain, picked by SNI; development self-signed certificates.

RFC 7590 / RFC 6120 §13.8: TLS 1.2 or later, no compression, strong AEAD suites.

ALPN (RFC 7301) on direct-TLS listeners: each listener speaks one protocol, ``xmpp-client``
on c2s_tls and ``xmpp-server`` on s2s_tls (XEP-0368 §3 rules 8 and 9), ``http/1.1`` on https.
A client that offers ALPN without that protocol gets the fatal ``no_application_protocol``
alert (RFC 7301 §3.2: "the server SHALL respond with a fatal 'no_application_protocol'
alert"), so a client connecting to the wrong port learns it at once instead of speaking the
wrong protocol. A client that sends no ALPN extension is served: XEP-0368 §3 rule 7 makes
ALPN a SHOULD, and §5 notes that it may be disabled for privacy. The contexts are shared by
all listeners (and switched by SNI), so the protocol a connection wants is set on the
connection itself by the listener's ``ListenerTLS``.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLContextFactory, IOpenSSLServerConnectionCreator
from zope.interface import implementer

from xmppd.config import ServerConfig, TLSConfig
from xmppd.logs import Logger

log = Logger(namespace="xmppd.tls")

ALPN_PROTOCOLS = (b"xmpp-client", b"xmpp-server")
# The one ALPN protocol of each direct-TLS listener type; None: no registered protocol, the
# extension is ignored (XEP-0114 components).
LISTENER_ALPN: dict[str, bytes | None] = {
    "c2s_tls": b"xmpp-client", "s2s_tls": b"xmpp-server", "https": b"http/1.1",
    "component_tls": None,
}


class TLSConfigError(ValueError):
    pass


@dataclass(frozen=True)
class CertPaths:
    cert: Path
    key: Path
    generated: bool = False


def find_cert(cfg: ServerConfig, domain: str) -> CertPaths | None:
    """Configured paths, then ``certs/<domain>.crt``, then the data dir's generated one."""
    hc = cfg.hosts.get(domain)
    if hc is not None and hc.cert:
        return CertPaths(cfg.resolve(hc.cert), cfg.resolve(hc.key))
    for folder, generated in ((cfg.resolve("certs"), False),
                              (cfg.resolve(cfg.data_dir) / "certs", True)):
        crt, key = folder / f"{domain}.crt", folder / f"{domain}.key"
        if crt.exists() and key.exists():
            return CertPaths(crt, key, generated)
    return None


def ensure_cert(cfg: ServerConfig, domain: str) -> CertPaths:
    found = find_cert(cfg, domain)
    if found is not None:
        return found
    if not cfg.tls.self_signed:
        raise TLSConfigError(
            f"hosts.{domain}: no certificate configured and tls.self_signed is false "
            f"(set hosts.{domain}.cert/key or put certs/{domain}.crt and .key)")
    folder = cfg.resolve(cfg.data_dir) / "certs"
    paths = CertPaths(folder / f"{domain}.crt", folder / f"{domain}.key", True)
    generate_self_signed(domain, paths.cert, paths.key)
    log.warn("generated a self-signed certificate for {domain} in {path}; clients will not "
             "trust it - configure a real certificate for production", domain=domain,
             path=str(paths.cert))
    return paths


def generate_self_signed(domain: str, cert_path: Path, key_path: Path, days: int = 825,
                         issuer_cert: x509.Certificate | None = None,
                         issuer_key: ec.EllipticCurvePrivateKey | None = None,
                         extra_names: tuple[str, ...] = ()) -> None:
    """Write an EC P-256 certificate for ``domain`` and ``*.domain`` (subdomain services),
    self-signed or signed by the given issuer (tests make their own CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    names: list[x509.GeneralName] = []
    for n in (domain, f"*.{domain}", *extra_names):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            names.append(x509.DNSName(n))
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    signer = issuer_key if issuer_key is not None else key
    cert = builder.sign(signer, hashes.SHA256())
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def check_cert(paths: CertPaths, domain: str) -> list[str]:
    """Problems with a certificate for ``domain`` (empty list = fine)."""
    problems: list[str] = []
    try:
        cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    except (OSError, ValueError) as exc:
        return [f"{paths.cert}: cannot read certificate: {exc}"]
    try:
        serialization.load_pem_private_key(paths.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        problems.append(f"{paths.key}: cannot read private key: {exc}")
    now = datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc < now:
        problems.append(f"{paths.cert}: expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if cert.not_valid_before_utc > now:
        problems.append(f"{paths.cert}: not valid before {cert.not_valid_before_utc:%Y-%m-%d}")
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        dns = sans.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    if not any(_dns_match(pattern, domain) for pattern in dns):
        problems.append(f"{paths.cert}: no subjectAltName matches {domain} (has {dns})")
    if not problems:
        try:
            make_context(paths, "1.2", TLSConfig().ciphers)
        except SSL.Error as exc:
            problems.append(f"{paths.cert}: certificate and key do not work together: {exc}")
    return problems


def _dns_match(pattern: str, name: str) -> bool:
    pattern, name = pattern.lower(), name.lower()
    if pattern.startswith("*."):
        return name.count(".") == pattern.count(".") and name.endswith(pattern[1:])
    return pattern == name


def make_context(paths: CertPaths, min_version: str, ciphers: str) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION if min_version == "1.3" else SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
                    | SSL.OP_NO_RENEGOTIATION)
    # Idle connections are the common case: give OpenSSL's 2 x ~17 KiB record buffers back
    # while a connection has nothing in flight (measured in bench/: KiB per idle connection).
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    ctx.set_cipher_list(ciphers.encode())
    ctx.use_certificate_chain_file(str(paths.cert))
    ctx.use_privatekey_file(str(paths.key))
    ctx.check_privatekey()
    ctx.set_session_id(b"xmppd")
    ctx.set_alpn_select_callback(_select_alpn)
    return ctx


class NoApplicationProtocol(SSL.Error):
    """The client's ALPN list lacks the listener's protocol: OpenSSL sends the fatal
    ``no_application_protocol`` alert and the handshake fails with this."""


_UNSET = object()


def _select_alpn(conn: SSL.Connection, offered: list[bytes]) -> bytes | Any:
    wanted = getattr(conn, "xmppd_alpn", _UNSET)
    if wanted is _UNSET:  # STARTTLS: ALPN is not part of it, but answer a client that asks
        for proto in ALPN_PROTOCOLS:
            if proto in offered:
                return proto
        return SSL.NO_OVERLAPPING_PROTOCOLS
    if wanted is None:
        return SSL.NO_OVERLAPPING_PROTOCOLS
    if wanted in offered:
        return wanted
    # pyOpenSSL turns an exception here into SSL_TLSEXT_ERR_ALERT_FATAL (the alert) and
    # raises it from the handshake, where Twisted closes the connection with it.
    # The argument has the shape of OpenSSL's error queue, which Twisted reads.
    raise NoApplicationProtocol([("SSL routines", "xmppd", "no application protocol")])


@implementer(IOpenSSLServerConnectionCreator)
class ListenerTLS:
    """The TLS connections of one direct-TLS listener: the SNI-chosen contexts of
    ``contexts`` and the listener's ALPN protocol (module docstring)."""

    def __init__(self, contexts: ContextFactory, alpn: bytes | None) -> None:
        self.contexts = contexts
        self.alpn = alpn

    def serverConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:  # noqa: N802
        conn = SSL.Connection(self.contexts.getContext(), None)
        conn.set_app_data(tls_protocol)
        conn.xmppd_alpn = self.alpn  # type: ignore[attr-defined]
        return conn


def listener_tls(contexts: ContextFactory, listener_type: str) -> ListenerTLS:
    return ListenerTLS(contexts, LISTENER_ALPN[listener_type])


def negotiated_alpn(transport: Any) -> str:
    """The ALPN protocol a TLS transport agreed on ('' for none, or no TLS)."""
    try:
        proto = transport.getHandle().get_alpn_proto_negotiated()
    except (AttributeError, SSL.Error):
        return ""
    return proto.decode("ascii", "replace") if proto else ""


@implementer(IOpenSSLContextFactory)
class HostContextFactory:
    """STARTTLS with one fixed context: the domain named in the stream header (c2s and
    inbound s2s)."""

    def __init__(self, ctx: SSL.Context) -> None:
        self.ctx = ctx

    def getContext(self) -> SSL.Context:  # noqa: N802 (Twisted API)
        return self.ctx


@implementer(IOpenSSLContextFactory)
class ContextFactory:
    """Twisted context factory (``getContext``) choosing the domain's context by SNI."""

    def __init__(self, contexts: dict[str, SSL.Context], default: str) -> None:
        self.contexts = contexts
        self.default_domain = default
        self.default = contexts[default]
        for ctx in contexts.values():
            ctx.set_tlsext_servername_callback(self._on_sni)

    def replace(self, contexts: dict[str, SSL.Context]) -> None:
        """New contexts (reloaded certificates) for the handshakes from now on; streams
        already encrypted keep theirs. The dict is updated in place: it is shared."""
        for ctx in contexts.values():
            ctx.set_tlsext_servername_callback(self._on_sni)
        self.contexts.clear()
        self.contexts.update(contexts)
        self.default = self.contexts[self.default_domain]

    def _on_sni(self, conn: SSL.Connection) -> None:
        name = conn.get_servername()
        if not name:
            return
        domain = name.decode("ascii", "replace").lower().rstrip(".")
        ctx = self.contexts.get(domain)
        if ctx is None and "." in domain:
            ctx = self.contexts.get(domain.split(".", 1)[1])  # service subdomain
        if ctx is not None:
            conn.set_context(ctx)

    def getContext(self) -> SSL.Context:  # noqa: N802 (Twisted API)
        return self.default


class CertStore:
    """Loads (or generates) a certificate for every host at start-up; ``reload`` reads them
    again (renewed certificates) without touching established streams."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.paths, self.contexts = _load_all(cfg)
        self.factory = ContextFactory(self.contexts, next(iter(cfg.hosts)))

    def reload(self, cfg: ServerConfig) -> None:
        """All or nothing: TLSConfigError leaves the current certificates in use."""
        paths, contexts = _load_all(cfg)
        self.cfg = cfg
        self.paths.clear()
        self.paths.update(paths)
        self.factory.replace(contexts)  # self.contexts is the factory's dict

    def certificate_der(self, domain: str) -> bytes:
        """DER of the domain's leaf certificate (for tls-server-end-point bindings)."""
        cert = x509.load_pem_x509_certificate(self.paths[domain].cert.read_bytes())
        return cert.public_bytes(serialization.Encoding.DER)


def _load_all(cfg: ServerConfig) -> tuple[dict[str, CertPaths], dict[str, SSL.Context]]:
    paths: dict[str, CertPaths] = {}
    contexts: dict[str, SSL.Context] = {}
    for domain in cfg.hosts:
        found = ensure_cert(cfg, domain)
        try:
            contexts[domain] = make_context(found, cfg.tls.min_version, cfg.tls.ciphers)
        except (SSL.Error, OSError) as exc:
            raise TLSConfigError(f"hosts.{domain}: cannot load {found.cert}: {exc}") from None
        paths[domain] = found
    return paths, contexts
