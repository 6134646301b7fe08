"""xmppd: a federated XMPP server on Twisted."""

__version__ = "0.1.0"
