"""What a configuration reload applies, what it reports as needing a restart, and that a bad
file changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.inproc import make_server, resolve
from tests.support.server import to_toml
from xmppd import logs
from xmppd.server import XmppServer


def write(path: Path, extra: dict[str, object]) -> None:
    base: dict[str, object] = {"hosts": {"localhost": {}}, "storage": {"url": "sqlite://"},
                               "plugins": {"enabled": ["disco", "roster", "muc"]}}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}  # type: ignore[dict-item]
        else:
            base[key] = value
    path.write_text(to_toml(base))


def server(tmp_path: Path) -> XmppServer:
    srv = make_server(["disco", "roster", "muc"])
    srv.config_path = str(tmp_path / "xmppd.toml")
    return srv


@pytest.fixture(autouse=True)
def keep_log_level() -> Iterator[None]:
    saved = logs._threshold
    yield
    logs._threshold = saved


def test_reload_applies_what_it_can_and_reports_the_rest(tmp_path: Path) -> None:
    srv = server(tmp_path)
    roster = srv.hosts["localhost"].plugins["roster"]
    muc = srv.hosts["localhost"].plugins["muc"]
    write(tmp_path / "xmppd.toml", {
        "log": {"level": "warn"},
        "auth": {"ban_after": 3},
        "hosts": {"localhost": {"admins": ["boss@localhost"]}},
        "listeners": [{"type": "c2s", "port": 5999}],
        "plugins": {"roster": {"max_items": 7}, "muc": {"max_occupants": 3}},
    })
    report = resolve(srv.reload())
    assert report.errors == []
    assert "log.level (warn)" in report.reloaded and "auth" in report.reloaded
    assert "admins" in report.reloaded and "plugins.roster" in report.reloaded
    assert report.restart == ["listeners", "plugins.muc"]
    assert srv.config.log.level == "warn"
    assert srv.auth_guard.policy.ban_after == 3
    assert srv.config.hosts["localhost"].admins == ["boss@localhost"]
    assert resolve(srv.settings("localhost").is_admin("boss@localhost"))
    assert roster.options.max_items == 7
    assert muc.options.max_occupants != 3  # built into rooms: needs a restart
    assert srv.config.listeners != [] and all(lc.port != 5999 for lc in srv.config.listeners)


def test_a_bad_file_changes_nothing(tmp_path: Path) -> None:
    srv = server(tmp_path)
    before = srv.config
    (tmp_path / "xmppd.toml").write_text("[log]\nlevel = 'loud'\n")
    report = resolve(srv.reload())
    assert report.reloaded == [] and report.restart == []
    assert report.errors and "log.level" in report.errors[0]
    assert srv.config is before
    write(tmp_path / "xmppd.toml", {"plugins": {"roster": {"max_items": "many"}}})
    report = resolve(srv.reload())
    assert "plugins.roster.max_items" in report.errors[0] and srv.config is before
