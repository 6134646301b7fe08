"""The /chat/ page: Converse.js settings from [plugins.webclient] and the server's plugins."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.web.test.requesthelper import DummyRequest

from plugins.webclient import WebClient
from tests.support.inproc import make_server
from xmppd.config import ConfigError


def settings(options: dict[str, Any] | None = None,
             plugins: tuple[str, ...] = ("disco", "muc", "webclient")) -> dict[str, Any]:
    server = make_server(list(plugins), options={"webclient": options or {}})
    plugin = server.hosts["localhost"].plugin("webclient")
    assert isinstance(plugin, WebClient)
    request = DummyRequest([b"chat", b""])
    request.requestHeaders.setRawHeaders(b"host", [b"localhost:5281"])
    request.isSecure = lambda: True  # type: ignore[method-assign]
    page = plugin.page(request)
    start = page.index("converse.initialize(") + len("converse.initialize(")
    out: dict[str, Any] = json.loads(page[start:page.index(");</script>", start)])
    assert "converse.plugins.add('xmppd-compat'" in page  # registered before initialize
    assert "fetchFromServer" in page  # the roster asked for again on a fresh reconnection
    assert out["websocket_url"] == "wss://localhost:5281/xmpp-websocket"
    return out


def test_omemo_is_available_by_default_and_each_chat_chooses() -> None:
    s = settings()
    assert s["omemo_default"] is False
    assert "converse-omemo" not in s.get("blacklisted_plugins", [])
    assert s["whitelisted_plugins"] == ["xmppd-compat"]


def test_omemo_default_encrypts_from_the_start_and_off_removes_it() -> None:
    assert settings({"omemo": "default"})["omemo_default"] is True
    off = settings({"omemo": "off"})
    assert off["blacklisted_plugins"] == ["converse-omemo"]
    assert "omemo_default" not in off


def test_unknown_omemo_value_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"plugins\.webclient\.omemo: must be one of"):
        settings({"omemo": "always"})


def test_rooms_are_found_on_this_servers_muc_not_a_third_party_directory() -> None:
    s = settings()
    assert s["muc_domain"] == s["muc_search_service"] == "conference.localhost"
    without = settings(plugins=("disco", "webclient"))
    assert "muc_domain" not in without and "muc_search_service" not in without
