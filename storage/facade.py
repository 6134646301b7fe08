"""What the rest of the server sees of storage: value types and the ``Storage`` facade.

Plugins reach storage through ``host.storage``; each attribute is a store with async
methods (Deferreds) that have committed by the time they fire.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.accounts import AccountStore
from storage.archive import ArchiveStore
from storage.blocking import BlockingStore
from storage.directory import DirectoryStore
from storage.fast import FastTokenStore
from storage.invites import InviteStore
from storage.kv import KVStore
from storage.offline import OfflineStore
from storage.private import PrivateStore
from storage.pubsub import PubsubStore
from storage.push import PushStore
from storage.rooms import RoomStore
from storage.roster import RosterStore
from storage.sql import Database
from storage.uploads import UploadStore
from storage.vcard import VCardStore


@dataclass(frozen=True, slots=True)
class Credentials:
    """SCRAM verifier for one hash (RFC 5802 §3): never the password itself."""

    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes
    # The account is disabled (XEP-0133): read with the credentials, so a login asks the
    # database once; a correct password then gets <account-disabled/> (RFC 6120 §6.5.1).
    disabled: bool = False


class Storage:
    """All stores over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.accounts = AccountStore(db)
        self.kv = KVStore(db)
        self.roster = RosterStore(db)
        self.offline = OfflineStore(db)
        self.archive = ArchiveStore(db)
        self.rooms = RoomStore(db)
        self.directory = DirectoryStore(db)
        self.blocking = BlockingStore(db)
        self.invites = InviteStore(db)
        self.private = PrivateStore(db)
        self.vcard = VCardStore(db)
        self.pubsub = PubsubStore(db)
        self.uploads = UploadStore(db)
        self.fast = FastTokenStore(db)
        self.push = PushStore(db)

    @classmethod
    def from_url(cls, url: str, pool_size: int = 8) -> Storage:
        return cls(Database(url, pool_size))
