"""Server-to-server (RFC 6120 s2s, XEP-0178, XEP-0220, XEP-0368); see ARCHITECTURE.md."""

# What federation implements, for the generated feature list (xmppd/features.py).
SPECS: tuple[str, ...] = (
    "RFC 6120 (server-to-server streams)",
    "RFC 6125 (certificate identity, via service-identity)",
    "XEP-0178 1.2.0 (SASL EXTERNAL for s2s)",
    "XEP-0220 1.1.2 (server dialback)",
    "XEP-0185 1.0 (dialback key generation)",
    "XEP-0368 1.1.0 (SRV records for XMPP over TLS)",
)
