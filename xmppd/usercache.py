"""Per-user data plugins keep in memory while a user has sessions (roster, blocklist, MAM
preferences). With a cluster every node may hold a copy, so a committed change is announced
and the other nodes drop theirs; their next use reloads it from storage."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure

from xmppd.logs import Logger

log = Logger(namespace="xmppd.usercache")

V = TypeVar("V")


class UserCache(dict[str, V], Generic[V]):
    """A dict keyed by bare JID; call ``changed(key)`` after committing a change to the data."""

    def __init__(self, name: str, registry: UserCaches) -> None:
        super().__init__()
        self.name = name
        self._registry = registry
        # Refresh an entry in place when another node changed it (default: drop it).
        self.reload: Callable[[str], Coroutine[Any, Any, None]] | None = None

    def changed(self, key: str) -> None:
        announce = self._registry.announce
        if announce is not None:
            announce(self.name, key)


class UserCaches:
    def __init__(self) -> None:
        self._caches: dict[str, UserCache[object]] = {}
        self.announce: Callable[[str, str], None] | None = None  # set by the cluster

    def cache(self, name: str) -> UserCache[object]:
        found = self._caches.get(name)
        if found is None:
            found = self._caches[name] = UserCache(name, self)
        return found

    def drop(self, name: str, key: str) -> None:
        """Another node changed ``key``'s data: forget our copy."""
        cache = self._caches.get(name)
        if cache is None or key not in cache:
            return
        if cache.reload is None:
            del cache[key]
            return
        d: Deferred[None] = ensureDeferred(cache.reload(key))

        def failed(f: Failure) -> None:
            cache.pop(key, None)  # reloaded on next use instead
            log.failure("could not reload {cache} for {key}", f, cache=name, key=key)

        d.addErrback(failed)
