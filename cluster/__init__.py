"""Several xmppd nodes sharing one database and one Redis (``[cluster]`` in the configuration).

Imported by ``xmppd.server`` only when a cluster is configured, so a single-node server needs
neither txredisapi nor hiredis (``pip install xmppd[cluster]``). ``node.py`` is the whole of
it: the Redis session registry, stanza hand-over between nodes and room placement.
"""
