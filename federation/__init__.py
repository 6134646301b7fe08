"""Server-to-server (RFC 6120 s2s, XEP-0178, XEP-0220, XEP-0368); see ARCHITECTURE.md."""
