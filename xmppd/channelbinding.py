"""TLS channel bindings for SCRAM-*-PLUS (RFC 5802 §6), advertised with XEP-0440.

* ``tls-exporter`` (RFC 9266): 32 bytes exported with the label "EXPORTER-Channel-Binding"
  and no context. Offered on TLS 1.3 only: RFC 9266 §4.2 allows it on TLS 1.2 only with the
  extended master secret, which pyOpenSSL does not let us check.
* ``tls-server-end-point`` (RFC 5929 §4.1): the hash of our certificate, with the hash of
  its signature algorithm, SHA-256 when that is MD5 or SHA-1. Any TLS version; XEP-0440
  makes it the one every server offers.

``tls-unique`` is not offered: it is undefined for TLS 1.3 (RFC 9266 §3) and weak on 1.2
without the extended master secret (the triple handshake attack).
"""

from __future__ import annotations

from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import SSL

NS_SASL_CB: Final = "urn:xmpp:sasl-cb:0"
TLS_EXPORTER: Final = "tls-exporter"
TLS_SERVER_END_POINT: Final = "tls-server-end-point"
_EXPORTER_LABEL: Final = b"EXPORTER-Channel-Binding"


class ChannelBindings:
    """The channel bindings one TLS connection (server side) can offer, and their data."""

    __slots__ = ("_conn", "types")

    def __init__(self, conn: SSL.Connection) -> None:
        self._conn = conn
        types = [TLS_SERVER_END_POINT]
        if conn.get_protocol_version_name() == "TLSv1.3":
            types.insert(0, TLS_EXPORTER)
        self.types: tuple[str, ...] = tuple(types)

    def data(self, cb_type: str) -> bytes | None:
        """The cbind-data of ``cb_type`` on this connection (None: not offered here)."""
        if cb_type not in self.types:
            return None
        if cb_type == TLS_EXPORTER:
            data: bytes = self._conn.export_keying_material(_EXPORTER_LABEL, 32)
            return data
        cert = self._conn.get_certificate()
        if cert is None:
            return None
        return server_end_point(cert.to_cryptography())


def server_end_point(cert: x509.Certificate) -> bytes:
    """RFC 5929 §4.1: the certificate hashed with its signature's hash algorithm, except that
    MD5 and SHA-1 are replaced by SHA-256."""
    algorithm: Any = cert.signature_hash_algorithm
    if algorithm is None or isinstance(algorithm, (hashes.MD5, hashes.SHA1)):
        algorithm = hashes.SHA256()
    return cert.fingerprint(algorithm)


def bindings_of(transport: Any) -> ChannelBindings | None:
    """The bindings of a transport when it is TLS this process terminates (a TCP TLS
    transport, or the one under a WebSocket); None otherwise (plain TCP, or TLS ended
    by a proxy: nothing to bind to)."""
    handle = getattr(transport, "getHandle", None)
    conn = handle() if handle is not None else None
    if not isinstance(conn, SSL.Connection):
        return None
    try:
        return ChannelBindings(conn)
    except SSL.Error:
        return None
