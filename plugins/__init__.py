"""Server features, one module (or package) per RFC area or XEP. See xmppd.plugin."""
