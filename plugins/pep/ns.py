"""Namespaces of the pubsub family (XEP-0060 §15.1 and the XEPs PEP carries) and the error
shapes of XEP-0060 §7: a stanza error condition plus, where the XEP names one, an
application condition qualified by ``http://jabber.org/protocol/pubsub#errors``."""

from __future__ import annotations

from typing import Final

from plugins import caps, disco
from xmppd import stanza as st
from xmppd.errors import StanzaError

PUBSUB: Final = "http://jabber.org/protocol/pubsub"
OWNER: Final = PUBSUB + "#owner"
EVENT: Final = PUBSUB + "#event"
ERRORS: Final = PUBSUB + "#errors"
NODE_CONFIG: Final = PUBSUB + "#node_config"
PUBLISH_OPTIONS: Final = PUBSUB + "#publish-options"
META_DATA: Final = PUBSUB + "#meta-data"
CAPS: Final = caps.NS
DISCO_INFO: Final = disco.NS_INFO
DISCO_ITEMS: Final = disco.NS_ITEMS
ADDRESS: Final = "http://jabber.org/protocol/address"  # XEP-0033 (replyto, XEP-0163 §4.3.1)

AVATAR_DATA: Final = "urn:xmpp:avatar:data"  # XEP-0084
AVATAR_METADATA: Final = "urn:xmpp:avatar:metadata"
VCARD_CONVERSION: Final = "urn:xmpp:pep-vcard-conversion:0"  # XEP-0398
BOOKMARKS: Final = "urn:xmpp:bookmarks:1"  # XEP-0402
LEGACY_BOOKMARKS: Final = "storage:bookmarks"  # XEP-0048 (private XML and PEP)
BOOKMARKS_CONVERSION: Final = "urn:xmpp:bookmarks-conversion:0"  # XEP-0411
NICK: Final = "http://jabber.org/protocol/nick"  # XEP-0172

# XEP-0060 §10 features this service really implements (advertised on every account, with
# the prefix). Not: subscribe / subscription-options / retrieve-subscriptions (explicit
# subscriptions), modify-affiliations / member-affiliation, instant-nodes, collections,
# access-authorize, rsm.
FEATURES: Final = (
    "access-open", "access-presence", "access-roster", "access-whitelist", "auto-create",
    "auto-subscribe", "config-node", "create-and-configure", "create-nodes", "delete-items",
    "delete-nodes", "filtered-notifications", "item-ids", "last-published", "meta-data",
    "multi-items", "persistent-items", "presence-notifications", "publish",
    "publish-options", "purge-nodes", "retract-items", "retrieve-affiliations",
    "retrieve-default", "retrieve-items",
)


def error(condition: str, app: str | None = None, feature: str | None = None,
          text: str | None = None) -> StanzaError:
    """A StanzaError with the pubsub#errors application condition ``app`` (for ``unsupported``
    also naming the ``feature``), as the tables of XEP-0060 §6-§8 prescribe."""
    el = None
    if app is not None:
        el = st.make(app, ERRORS, {"feature": feature} if feature else None)
    return StanzaError(condition, text=text, app_condition=el)


def unsupported(feature: str) -> StanzaError:
    """XEP-0060: feature-not-implemented + <unsupported feature='...'/>."""
    return error("feature-not-implemented", "unsupported", feature)


def nodeid_required() -> StanzaError:
    return error("bad-request", "nodeid-required")
