"""A host's administrative settings: the admin list, the message of the day and the welcome
message (XEP-0133 §4.24-§4.29).

They are host-level rows of the key-value table (username ""), so every cluster node and
the command line with the server stopped see the same; a node keeps a copy in a UserCache
that other nodes are told to drop when one changes it. The admins named in the
configuration (``[hosts."x"] admins``) are the fixed part of the list: edit-admin adds and
removes the others, and cannot remove those (the file is the place for that).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.facade import Storage
    from xmppd.config import ServerConfig

STORE = "admin"
MOTD_SEEN = "motd-seen"  # per user: the id of the message of the day last sent to them


@dataclass(frozen=True)
class Motd:
    id: str  # a new one each time it is set or edited: users get the new text once
    text: str


class Settings:
    def __init__(self, storage: Storage, domain: str,
                 config: ServerConfig | Callable[[], ServerConfig],
                 cache: dict[str, Any] | None = None) -> None:
        self.storage = storage
        self.domain = domain
        self._config = config
        self._cache: dict[str, Any] = {} if cache is None else cache

    # -- raw values ------------------------------------------------------------------------
    async def _get(self, key: str) -> Any:
        if key in self._cache:
            return self._cache[key]
        raw = await self.storage.kv.get(self.domain, "", STORE, key)
        if key in self._cache:  # changed while we read: that is newer
            return self._cache[key]
        value = None if raw is None else json.loads(raw)
        self._cache[key] = value
        return value

    async def _put(self, key: str, value: Any) -> bool:
        """Store (None: delete) and tell other nodes; False if there was nothing to delete."""
        found = True
        if value is None:
            found = bool(await self.storage.kv.delete(self.domain, "", STORE, key))
        else:
            await self.storage.kv.set(self.domain, "", STORE, key, json.dumps(value))
        self._cache[key] = value
        changed = getattr(self._cache, "changed", None)
        if changed is not None:
            changed(key)
        return found

    # -- admins ------------------------------------------------------------------------------
    def fixed_admins(self) -> list[str]:
        cfg = self._config() if callable(self._config) else self._config
        hc = cfg.hosts.get(self.domain)
        return list(hc.admins) if hc is not None else []

    async def added_admins(self) -> list[str]:
        return list(await self._get("admins") or [])

    async def admins(self) -> list[str]:
        return sorted(set(self.fixed_admins()) | set(await self.added_admins()))

    async def is_admin(self, bare: str) -> bool:
        return bare in self.fixed_admins() or bare in await self.added_admins()

    async def set_admins(self, bare_jids: list[str]) -> list[str]:
        """The whole list as edited; the configured admins must be in it."""
        fixed = self.fixed_admins()
        added = sorted(set(bare_jids) - set(fixed))
        await self._put("admins", added or None)
        return sorted(set(fixed) | set(added))

    # -- message of the day ------------------------------------------------------------------
    async def motd(self) -> Motd | None:
        value = await self._get("motd")
        return None if not value else Motd(value["id"], value["text"])

    async def set_motd(self, text: str) -> Motd:
        motd = Motd(secrets.token_hex(8), text)
        await self._put("motd", {"id": motd.id, "text": text})
        return motd

    async def delete_motd(self) -> bool:
        return await self._put("motd", None)

    # -- welcome message ---------------------------------------------------------------------
    async def welcome(self) -> str | None:
        value = await self._get("welcome")
        return None if not value else str(value)

    async def set_welcome(self, text: str) -> None:
        await self._put("welcome", text)

    async def delete_welcome(self) -> bool:
        return await self._put("welcome", None)
