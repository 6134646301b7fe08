"""Configuration loading: defaults, the example file, and errors that name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from xmppd.config import (
    ComponentConfig,
    ConfigError,
    ContactConfig,
    HostConfig,
    ListenerConfig,
    ServerConfig,
    from_dict,
    load,
)
from xmppd.plugin import load_class, order, plugin_options

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_embedded_server() -> None:
    cfg = load(None)
    assert list(cfg.hosts) == ["localhost"]
    assert {("c2s", 5222), ("c2s_tls", 5223), ("http", 5280), ("https", 5281)} <= {
        (lc.type, lc.port) for lc in cfg.listeners}
    assert cfg.storage_url.startswith("sqlite:///") and cfg.storage_url.endswith("xmppd.sqlite")
    assert cfg.tls.require_c2s and cfg.tls.self_signed
    assert cfg.auth.iteration_count >= 4096


def test_example_config_loads_and_documents_every_key() -> None:
    cfg = load(ROOT / "xmppd.example.toml")
    assert cfg == dataclasses.replace(load(None), base_dir=cfg.base_dir, plugins=cfg.plugins)
    text = (ROOT / "xmppd.example.toml").read_text()
    for section in ("storage", "tls", "auth", "limits", "log", "federation", "web", "bosh",
                    "cluster", "metrics", "proxy_protocol"):
        for f in dataclasses.fields(getattr(cfg, section)):
            if f.name == "domains":  # a table of per-domain tables, shown commented out
                assert f"[{section}.domains." in text
                continue
            assert f"\n{f.name} =" in text, f"{section}.{f.name} is not documented"
    for f in dataclasses.fields(ListenerConfig):
        assert f"\n{f.name} =" in text or f"\n# {f.name} =" in text, (
            f"listeners.{f.name} is not documented")
    for f in dataclasses.fields(HostConfig):
        assert f"\n{f.name} =" in text or f"\n# {f.name} =" in text or (
            f'[hosts."localhost".{f.name}]' in text), f"hosts.*.{f.name} is not documented"
    for f in dataclasses.fields(ContactConfig):
        assert f"\n{f.name} =" in text, f"hosts.*.contact.{f.name} is not documented"
    assert '# [components."' in text and '# type = "component"' in text
    for f in dataclasses.fields(ComponentConfig):
        assert f"\n# {f.name} =" in text, f"components.*.{f.name} is not documented"
    for name in cfg.plugins["enabled"]:
        cls = load_class(name)
        opts = plugin_options(cfg, cls, name)
        for f in dataclasses.fields(opts):
            assert f"\n{f.name} =" in text, f"plugins.{name}.{f.name} is not documented"


@pytest.mark.parametrize("raw,message", [
    ({"nonsense": 1}, "nonsense: unknown key"),
    ({"tls": {"require_c2s": "yes"}}, "tls.require_c2s: expected true or false"),
    ({"tls": {"min_version": "1.1"}}, "tls.min_version: must be one of"),
    ({"auth": {"iteration_count": 100}}, "auth.iteration_count: must be at least 4096"),
    ({"auth": {"mechanisms": ["DIGEST-MD5"]}}, "auth.mechanisms: unknown mechanism"),
    ({"listeners": [{"type": "c2s"}]}, "listeners[0].port: required key missing"),
    ({"listeners": [{"type": "smtp", "port": 25}]}, "listeners[0].type: must be one of"),
    ({"hosts": {"bad domain!": {}}}, "hosts.bad domain!: not a valid domain"),
    ({"hosts": {"a.example": {"cert": "x.crt"}}}, "hosts.a.example: cert and key"),
    ({"limits": {"max_stanza_size": 10}}, "limits.max_stanza_size"),
    ({"plugins": {"enabled": "disco"}}, "plugins.enabled: expected a list"),
    ({"storage": {"pool_size": 1.5}}, "storage.pool_size: expected an integer"),
])
def test_errors_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        from_dict(raw)
    assert str(exc.value).startswith(message), str(exc.value)


def test_plugin_options_validated() -> None:
    cfg: ServerConfig = from_dict({"plugins": {"enabled": ["ping"],
                                               "ping": {"interval": "often"}}})
    with pytest.raises(ConfigError) as exc:
        plugin_options(cfg, load_class("ping"), "ping")
    assert str(exc.value).startswith("plugins.ping.interval: expected a number")
    cfg = from_dict({"plugins": {"enabled": ["ping"], "ping": {"bogus": 1}}})
    with pytest.raises(ConfigError):
        plugin_options(cfg, load_class("ping"), "ping")


def test_plugin_order_and_unknown_plugin() -> None:
    assert [c.name for c in order(["ping", "disco"])] == ["ping", "disco"]
    with pytest.raises(Exception, match="cannot import plugin"):
        order(["no_such_plugin"])
