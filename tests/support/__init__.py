"""Test support: a real server process, a test CA, slixmpp and raw-socket clients."""
