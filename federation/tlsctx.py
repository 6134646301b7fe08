"""TLS contexts for server-to-server streams (RFC 6120 §5, RFC 7590, XEP-0368).

Separate from the c2s contexts because s2s asks the connecting server for its certificate
(the proof SASL EXTERNAL relies on, XEP-0178). The s2s_tls listener negotiates the ALPN
protocol ``xmpp-server`` (xmppd.tls.ListenerTLS), and outbound direct TLS offers it. The
handshake never fails on the peer's certificate: trust and identity
are judged afterwards (federation.verify), because a certificate we cannot verify still
allows an encrypted stream authenticated by dialback when policy permits (XEP-0220).
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from xmppd.config import ServerConfig
from xmppd.tls import CertPaths, CertStore, ContextFactory, HostContextFactory, make_context

ALPN_SERVER = b"xmpp-server"


def _accept_any(conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
    return True  # verified after the handshake, see module docstring


@implementer(IOpenSSLClientConnectionCreator)
class ClientCreator:
    """Outbound TLS: our certificate for the sending domain, SNI = the target domain
    (XEP-0368 §3 rule 6), ALPN ``xmpp-server`` for direct TLS (rule 9)."""

    def __init__(self, ctx: SSL.Context, server_name: str, alpn: bool) -> None:
        self.ctx = ctx
        self.server_name = server_name
        self.alpn = alpn

    def clientConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:  # noqa: N802
        conn = SSL.Connection(self.ctx, None)
        try:
            conn.set_tlsext_host_name(self.server_name.encode("idna"))
        except (UnicodeError, ValueError):
            pass  # IP literals carry no SNI
        if self.alpn:
            conn.set_alpn_protos([ALPN_SERVER])
        conn.set_app_data(tls_protocol)
        conn.set_connect_state()
        return conn


class S2SContexts:
    """Per served domain: a server context (client certificate requested) and a client
    context (our certificate presented)."""

    def __init__(self, cfg: ServerConfig, certs: CertStore) -> None:
        self.cfg = cfg
        self.certs = certs
        self._client: dict[str, SSL.Context] = {}
        self.server = self._server_contexts()
        self.factory = ContextFactory(self.server, next(iter(self.server)))

    def _server_contexts(self) -> dict[str, SSL.Context]:
        out = {}
        for domain, paths in self.certs.paths.items():
            ctx = self._base(paths)
            ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE, _accept_any)
            out[domain] = ctx
        return out

    def reload(self, cfg: ServerConfig) -> None:
        """The CertStore has read the certificates again: new streams use them."""
        self.cfg = cfg
        contexts = self._server_contexts()
        self._client.clear()
        self.factory.replace(contexts)  # self.server is the factory's dict

    def _base(self, paths: CertPaths) -> SSL.Context:
        tls = self.cfg.tls
        return make_context(paths, tls.min_version, tls.ciphers)

    def cert_domain(self, domain: str) -> str:
        """The served domain whose certificate covers ``domain`` (a routed subdomain such as
        conference.example.org uses example.org's, which names *.example.org)."""
        if domain in self.certs.paths:
            return domain
        for host in self.certs.paths:
            if domain.endswith("." + host):
                return host
        return next(iter(self.certs.paths))

    def server_for(self, domain: str) -> HostContextFactory:
        """STARTTLS on an inbound stream: the context of the domain named in the header."""
        return HostContextFactory(self.server[self.cert_domain(domain)])

    def client(self, local: str, remote: str, direct_tls: bool) -> ClientCreator:
        key = self.cert_domain(local)
        ctx = self._client.get(key)
        if ctx is None:
            ctx = self._base(self.certs.paths[key])
            ctx.set_verify(SSL.VERIFY_NONE, _accept_any)
            self._client[key] = ctx
        return ClientCreator(ctx, remote, direct_tls)
