"""Benchmarks: our own XMPP load generator and the side-by-side driver (see bench/README.md).

The generator is deliberately independent of xmppd and of slixmpp, so the same client code
measures xmppd, Prosody and ejabberd and its own cost stays small and known.
"""
