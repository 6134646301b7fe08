"""Host.require / Host.optional: plugins reach each other by class, typed, and a dependency
that is not declared is an error when the plugin loads, whatever else is enabled."""

from __future__ import annotations

import pytest

from plugins.disco import Disco
from plugins.ping import Ping
from tests.support.inproc import make_server, resolve
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
