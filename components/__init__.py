"""External components (XEP-0114): gateways and services that run as their own processes
and serve a domain of this server over a ``jabber:component:accept`` stream."""

# What this package implements, for the generated feature list (xmppd/features.py).
SPECS: tuple[str, ...] = (
    "XEP-0114 1.5 (external components, accept)",
)
