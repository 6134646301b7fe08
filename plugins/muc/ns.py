"""Namespaces, features and status codes of XEP-0045 and the extensions the service speaks."""

from __future__ import annotations

from typing import Final

from plugins import disco, ping
from plugins.mam import NS_SID, retraction
from plugins.mam.query import NS_RSM

MUC: Final = "http://jabber.org/protocol/muc"
USER: Final = "http://jabber.org/protocol/muc#user"
ADMIN: Final = "http://jabber.org/protocol/muc#admin"
OWNER: Final = "http://jabber.org/protocol/muc#owner"
ROOMCONFIG: Final = "http://jabber.org/protocol/muc#roomconfig"
ROOMINFO: Final = "http://jabber.org/protocol/muc#roominfo"
REQUEST: Final = "http://jabber.org/protocol/muc#request"
STABLE_ID: Final = "http://jabber.org/protocol/muc#stable_id"  # XEP-0045 §7.4
SELF_PING: Final = "http://jabber.org/protocol/muc#self-ping-optimization"  # XEP-0410 §3.3
TRAFFIC: Final = "http://jabber.org/protocol/muc#traffic"  # XEP-0045 §17.1.1
ROOMUSER_NODE: Final = "x-roomuser-item"  # XEP-0045 §7.12
OCCUPANT_ID: Final = "urn:xmpp:occupant-id:0"  # XEP-0421
SID: Final = NS_SID  # XEP-0359
PING: Final = ping.NS  # XEP-0199
DISCO_INFO: Final = disco.NS_INFO
DISCO_ITEMS: Final = disco.NS_ITEMS
RSM: Final = NS_RSM
CONFERENCE: Final = "jabber:x:conference"  # XEP-0249
RETRACT: Final = retraction.NS  # XEP-0424
TOMBSTONE: Final = retraction.NS_TOMBSTONE  # XEP-0424 §4
MODERATE: Final = "urn:xmpp:message-moderate:1"  # XEP-0425 0.3.0
# XEP-0425 0.2.1, which 0.3.0 replaced: clients that only know it recognise the moderation
# notice by an <apply-to/> (XEP-0422) around <moderated/>.
FASTEN: Final = "urn:xmpp:fasten:0"
MODERATE_0: Final = "urn:xmpp:message-moderate:0"
RETRACT_0: Final = "urn:xmpp:message-retract:0"

# XEP-0045 §15.6 (status code registry): the codes this service sends.
NON_ANONYMOUS: Final = 100  # entering: any occupant may see the user's full JID
CONFIG_CHANGED: Final = 104  # non-privacy-related configuration change
SELF: Final = 110  # presence refers to the recipient itself
LOGGING_ON: Final = 170  # room discussions are logged (entering / config change)
LOGGING_OFF: Final = 171
NOW_NON_ANONYMOUS: Final = 172
NOW_SEMI_ANONYMOUS: Final = 173
CREATED: Final = 201  # a new room has been created
NICK_MODIFIED: Final = 210  # the service assigned or modified the roomnick
BANNED: Final = 301
NEW_NICK: Final = 303
KICKED: Final = 307
AFFILIATION_REMOVED: Final = 321  # removed because of an affiliation change
MEMBERS_ONLY_REMOVED: Final = 322  # removed because the room became members-only
SHUTDOWN: Final = 332  # removed because the service is shutting down
ERROR_REMOVED: Final = 333  # removed because of an error reply (XEP-0045 §14.1)

# XEP-0045 §18.1.2 "Ghost users": delivery errors after which an occupant is removed. The
# RFC 6121 §8.5.3.2.1 answer for a resource that is gone is service-unavailable, so it
# counts too (but not when the user's session is known to be alive, see presence.py).
KICKABLE_ERRORS: Final = frozenset((
    "gone", "item-not-found", "recipient-unavailable", "redirect",
    "remote-server-not-found", "remote-server-timeout", "service-unavailable",
    "jid-malformed"))
