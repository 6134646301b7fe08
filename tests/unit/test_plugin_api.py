"""The plugin API. Host.require / Host.optional: plugins reach each other by class, typed,
and a dependency that is not declared is an error when the plugin loads, whatever else is
enabled. Plugin.hooks: a plugin declares the hooks it fires; others handle them through the
host once it is loaded."""

from __future__ import annotations

import pytest

from plugins.disco import Disco
from plugins.ping import Ping
from tests.support.inproc import make_server, resolve
from xmppd.hooks import CATALOGUE, Hook
from xmppd.plugin import Plugin, PluginError, load_plugins


class Declared(Plugin):
    name = "declared"
    depends = ("disco",)

    def setup(self) -> None:
        self.disco = self.host.require(Disco)
        self.ping = self.host.optional(Ping)


class Undeclared(Plugin):
    name = "undeclared"

    def setup(self) -> None:
        self.host.require(Disco)  # loaded (enabled) but not in depends


RANG: Hook[list[str]] = Hook("test-rang", "fired by the Bell test plugin when rung")


class Bell(Plugin):
    name = "bell"
    hooks = (RANG,)

    def setup(self) -> None:
        self.host.on(RANG, lambda ev: ev.append("self"))  # its own hook, while loading

    async def ring(self) -> list[str]:
        ev: list[str] = []
        await self.host.fire(RANG, ev)
        return ev


class Listener(Plugin):
    name = "listener"
    depends = (f"{__name__}:Bell",)

    def setup(self) -> None:
        self.host.on(RANG, lambda ev: ev.append("listener"), priority=-1)


class Deaf(Plugin):
    name = "deaf"

    def setup(self) -> None:
        self.host.on(RANG, lambda ev: None)  # Bell not in depends (and not loaded)


HERE = __name__


def test_require_returns_the_loaded_instance_and_optional_none_when_absent() -> None:
    server = make_server([f"{HERE}:Declared"])
    host = server.hosts["localhost"]
    plugin = host.plugins["declared"]
    assert isinstance(plugin, Declared)
    assert plugin.disco is host.plugins["disco"]  # loaded implicitly, as a dependency
    assert plugin.ping is None
    with_ping = make_server(["ping", f"{HERE}:Declared"]).hosts["localhost"]
    assert with_ping.plugins["declared"].ping is with_ping.plugins["ping"]  # type: ignore[attr-defined]


def test_an_undeclared_dependency_fails_at_load_time_even_when_enabled() -> None:
    with pytest.raises(PluginError, match=r"add it to Undeclared\.depends"):
        make_server(["disco", f"{HERE}:Undeclared"])


def test_require_of_a_plugin_not_loaded_is_a_clear_error() -> None:
    host = make_server(["disco"]).hosts["localhost"]
    with pytest.raises(PluginError, match=r"'ping' .* is not loaded"):
        host.require(Ping)
    assert host.optional(Ping) is None
    assert host.require(Disco) is host.plugins["disco"]


def test_load_plugins_resets_the_loading_state_after_a_failure() -> None:
    host = make_server(["disco"]).hosts["localhost"]
    with pytest.raises(PluginError):
        resolve(load_plugins(host, [f"{HERE}:Undeclared"]))
    assert host.require(Disco) is host.plugins["disco"]  # no plugin is loading any more


def test_a_plugin_fires_its_own_hook_for_plugins_that_depend_on_it() -> None:
    host = make_server([f"{HERE}:Listener"]).hosts["localhost"]
    bell = host.require(Bell)
    assert resolve(bell.ring()) == ["self", "listener"]


def test_handling_a_hook_no_loaded_plugin_declares_fails_at_load_time() -> None:
    with pytest.raises(PluginError, match="'test-rang' is neither"):
        make_server([f"{HERE}:Deaf"])


def test_plugin_hooks_are_documented_and_do_not_clash_with_the_core() -> None:
    from plugins.pep import Pep
    from plugins.private import Private
    from plugins.vcard import VCard

    declared = [h for cls in (Pep, Private, VCard) for h in cls.hooks]
    assert declared, "private, vcard and pep fire their hooks through the host"
    names = [h.name for h in (*CATALOGUE, *declared)]
    assert len(names) == len(set(names))
    assert all(len(h.doc) > 20 for h in declared)
