"""XEP-0045 Multi-User Chat: a chat service at conference.<domain> (by default).

The service is a route target (service.py): the router hands it every stanza for the service
domain, its rooms and their occupants. One module per concern: room state and broadcast
(room.py, occupant.py, fanout.py), entering and leaving (presence.py), messages
(messages.py), roles and affiliations (roles.py, affiliations.py, admin.py), configuration
(config.py, owner.py), history (history.py), invitations (invites.py), voice requests
(voice.py), the room archive (mam.py, XEP-0313 on the room JID with XEP-0359 stanza ids),
service discovery (disco.py), IQs (iq.py, including XEP-0410 self-ping), flood control
(limits.py) and retractions by moderators or authors (moderation.py, XEP-0425, XEP-0424).
Occupants carry XEP-0421 occupant ids; nicknames follow the RFC 8266 Nickname profile, so
look-alikes conflict (nicks.py). Persistent rooms are stored in
``storage.rooms`` and brought back at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from plugins.disco import Disco
from plugins.muc.service import MucService
from xmppd import hooks as H
from xmppd.config import ConfigError
from xmppd.jid import JIDError, prepare_domain
from xmppd.plugin import Plugin


@dataclass(frozen=True)
class Options:
    service: str = ""  # the MUC domain; empty: conference.<domain>
    name: str = "Chatrooms"  # the service's name in service discovery
    room_creation: Literal["anyone", "local"] = "local"  # who may create rooms
    max_rooms_per_user: int = 100  # rooms one user may own (creation is refused beyond)
    lock_rooms: bool = True  # new rooms wait for their configuration (XEP-0045 §10.1)
    lock_timeout: float = 300.0  # seconds before an unconfigured room is destroyed; 0 = never
    max_occupants: int = 1000  # hard limit of occupants in a room (admins and owners too)
    default_max_users: int = 500  # muc#roomconfig_maxusers of a new room
    default_persistent: bool = False  # new rooms survive their last occupant
    default_public: bool = True  # new rooms are listed in service discovery
    default_archiving: bool = True  # new rooms keep a XEP-0313 archive
    default_whois: Literal["moderators", "anyone"] = "moderators"  # "anyone": non-anonymous
    default_history: int = 20  # messages of history a new room sends to newcomers
    max_history: int = 100  # the most history an owner may configure
    max_nick_length: int = 64  # characters of a roomnick (longer: jid-malformed)
    max_message_size: int = 32768  # bytes of one message to a room (larger: policy-violation)
    message_rate: float = 10.0  # stanzas per second one occupant may send on average ...
    message_burst: int = 30  # ... with bursts of this many (more: resource-constraint)
    max_disco_items: int = 100  # rooms per page of the service's disco#items
    max_archive_page: int = 250  # messages per page of a room archive query


class Muc(Plugin):
    name = "muc"
    specs = ("XEP-0045 1.35.5", "XEP-0249 0.2 (direct invitations: nothing for the room to do)",
             "XEP-0410 1.1.0", "XEP-0421 1.0.0",
             "XEP-0313 1.1.3 (room archives)", "XEP-0359 0.7.0 (room stanza ids)",
             "XEP-0424 0.4.2 (an author's retraction in rooms; room archive tombstones)",
             "XEP-0425 0.3.0 (moderators retract room messages)",
             "RFC 8266 (room nicknames)")
    depends = ("disco",)
    Options = Options

    async def setup(self) -> None:
        opts = cast(Options, self.options)
        _validate(opts)
        try:
            domain = prepare_domain(opts.service or f"conference.{self.host.domain}")
        except JIDError as exc:
            raise ConfigError(f"plugins.muc.service: not a valid domain: {exc}") from None
        self.service = MucService(self, domain)
        await self.service.load()
        try:
            self.host.add_route(domain, self.service)
        except ValueError:
            raise ConfigError(f"plugins.muc.service: {domain} is already served (an explicit "
                              "service domain suits a single host)") from None
        self.host.require(Disco).add_item(domain, opts.name)
        self.host.on(H.SESSION_CLOSED, self.service.session_closed, priority=-10)
        self.host.on(H.REMOTE_SESSION_ENDED, self.service.session_closed)
        self.host.on(H.CLUSTER_CHANGED, self.service.reload_idle)
        self.host.on(H.SERVER_STOPPING, self.service.shutdown)
        self.host.on(H.ACCOUNT_DELETED, self.service.account_deleted)

    def teardown(self) -> None:
        self.service.stop()
        self.service.proxy.stop()


def _validate(o: Options) -> None:
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"plugins.muc.{key}: {why}")

    if not 1 <= o.max_nick_length <= 255:  # the archive keys messages by roomnick
        raise bad("max_nick_length", "must be 1..255")
    if o.max_occupants < 1 or o.default_max_users < 1:
        raise bad("max_occupants", "must be at least 1")
    if o.max_history < 0 or o.default_history < 0:
        raise bad("max_history", "must not be negative")
    if o.message_rate <= 0 or o.message_burst < 1:
        raise bad("message_rate", "rate must be positive and burst at least 1")
    if o.max_message_size < 1 or o.max_disco_items < 1 or o.max_archive_page < 1:
        raise bad("max_message_size", "limits must be positive")
