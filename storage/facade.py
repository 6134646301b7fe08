"""What the rest of the server sees of storage: the ``Storage`` facade over every store.

Plugins reach storage through ``host.storage``; each attribute is a store with async
methods (Deferreds) that have committed by the time they fire.
"""

from __future__ import annotations

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
