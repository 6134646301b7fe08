"""Hook ordering, consumption, error isolation, async handlers."""

from __future__ import annotations

import pytest
from twisted.internet import defer

from xmppd.errors import StanzaError
from xmppd.hooks import CATALOGUE, Hook, HookBus, SyncHook

H: Hook[list[str]] = Hook("test", "a hook for tests")
S: SyncHook[list[str]] = SyncHook("test-sync", "a synchronous hook for tests")


def fire(bus: HookBus, event: list[str]) -> bool:
    d = defer.Deferred.fromCoroutine(bus.fire(H, event))
    out: list[object] = []
    d.addBoth(out.append)
    if isinstance(out[0], BaseException) or hasattr(out[0], "raiseException"):
        out[0].raiseException()  # type: ignore[union-attr]
    return bool(out[0])


def test_priority_order_and_consumption() -> None:
    bus = HookBus()
    bus.add(H, lambda e: e.append("low"), priority=-5)
    bus.add(H, lambda e: e.append("high") or False, priority=10)
    reg = bus.add(H, lambda e: (e.append("mid"), True)[1])
    ev: list[str] = []
    assert fire(bus, ev) is True
    assert ev == ["high", "mid"]
    reg.remove()
    ev = []
    assert fire(bus, ev) is False
    assert ev == ["high", "low"]


def test_broken_handler_is_logged_and_skipped() -> None:
    bus = HookBus()

    def broken(e: list[str]) -> None:
        raise RuntimeError("boom")

    bus.add(H, broken, priority=1)
    bus.add(H, lambda e: e.append("after"))
    ev: list[str] = []
    assert fire(bus, ev) is False
    assert ev == ["after"]


def test_stanza_error_propagates() -> None:
    bus = HookBus()

    def deny(e: list[str]) -> None:
        raise StanzaError("forbidden")

    bus.add(H, deny)
    with pytest.raises(StanzaError):
        fire(bus, [])


def test_async_handler() -> None:
    bus = HookBus()

    async def handler(e: list[str]) -> bool:
        await defer.succeed(None)
        e.append("async")
        return True

    bus.add(H, handler)
    ev: list[str] = []
    assert fire(bus, ev) is True and ev == ["async"]


def test_sync_fire_rejects_awaitables() -> None:
    bus = HookBus()

    async def handler(e: list[str]) -> bool:
        return True

    bus.add(S, handler)  # type: ignore[arg-type]  # what mypy rejects, at run time
    with pytest.raises(TypeError):
        bus.fire_sync(S, [])


def test_sync_hook_runs_plain_handlers_in_order() -> None:
    bus = HookBus()
    bus.add(S, lambda e: e.append("second") or False)
    bus.add(S, lambda e: e.append("first") or False, priority=5)
    ev: list[str] = []
    assert bus.fire_sync(S, ev) is False
    assert ev == ["first", "second"]


def test_catalogue_is_documented_and_unique() -> None:
    from xmppd import hooks

    # Host.on accepts the catalogue's hooks (and those plugins declare): every one is in it.
    assert {v for v in vars(hooks).values() if isinstance(v, hooks.BaseHook)} == set(CATALOGUE)
    names = [h.name for h in CATALOGUE]
    assert len(names) == len(set(names))
    assert all(len(h.doc) > 20 for h in CATALOGUE)
