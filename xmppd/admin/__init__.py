"""The administrative operations (xmppd/ops.py explains how they are offered). Importing
this package registers them all."""

from xmppd.admin import accounts, lists, messages, service

__all__ = ["accounts", "lists", "messages", "service"]
