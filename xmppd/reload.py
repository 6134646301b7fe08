"""Reloading while running (SIGHUP, `xmppd reload`, the reload command): the certificates are
read again and what of the configuration can change without dropping a session is applied;
what cannot is reported as needing a restart, and left as it is.

Applied: ``log.level``; ``tls`` (new handshakes use the new contexts, established streams keep
theirs); ``auth`` (mechanisms, throttling, ban policy; bans in force stay); ``limits`` (new
connections); per host ``cert``, ``key``, ``admins`` and ``contact`` (XEP-0157); the
options of plugins that read them only when they use them (``Plugin.live_options``).
Everything else (listeners, proxy_protocol, storage, hosts and their plugin lists, federation,
web, cluster, data_dir, log format and file name, the options of other plugins) needs a
restart. The log file is opened again by its name each time, for logrotate. A configuration
file that does not load changes nothing (the certificates are still read again); neither does
a certificate that does not.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xmppd import logs
from xmppd.authguard import GuardPolicy
from xmppd.config import ConfigError, ServerConfig, load
from xmppd.logs import Logger
from xmppd.plugin import plugin_options
from xmppd.tls import TLSConfigError

if TYPE_CHECKING:
    from xmppd.server import XmppServer

log = Logger(namespace="xmppd.reload")

RESTART_ONLY = ("listeners", "data_dir", "storage", "federation", "web", "cluster",
                "proxy_protocol")


@dataclass
class ReloadReport:
    reloaded: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)  # changed, but only a restart applies it
    errors: list[str] = field(default_factory=list)


def _merge(old: ServerConfig, new: ServerConfig, report: ReloadReport) -> ServerConfig:
    for key in RESTART_ONLY:
        if getattr(old, key) != getattr(new, key):
            report.restart.append(key)
    for key in ("format", "file"):
        if getattr(old.log, key) != getattr(new.log, key):
            report.restart.append(f"log.{key}")
    hosts = old.hosts
    if set(old.hosts) != set(new.hosts):
        report.restart.append("hosts")
    else:
        hosts = {}
        for domain, hc in old.hosts.items():
            fresh = new.hosts[domain]
            if hc.plugins != fresh.plugins:
                report.restart.append(f"hosts.{domain}.plugins")
            hosts[domain] = dataclasses.replace(hc, cert=fresh.cert, key=fresh.key,
                                                admins=fresh.admins, contact=fresh.contact)
    return dataclasses.replace(old, hosts=hosts, tls=new.tls, auth=new.auth,
                               limits=new.limits,
                               log=dataclasses.replace(old.log, level=new.log.level))


def _plugins(server: XmppServer, merged: ServerConfig, new: ServerConfig,
             report: ReloadReport) -> tuple[dict[str, Any], list[tuple[Any, Any]]]:
    """The plugin tables to keep and the (plugin, options) to apply; nothing is applied yet,
    so one bad option table changes nothing."""
    old_tables, new_tables = merged.plugins, new.plugins
    tables = dict(old_tables)
    if old_tables.get("enabled") != new_tables.get("enabled"):
        report.restart.append("plugins.enabled")
    names = {k for k in (*old_tables, *new_tables) if k != "enabled"}
    changed = sorted(n for n in names if old_tables.get(n) != new_tables.get(n))
    updates: list[tuple[Any, Any]] = []
    for name in changed:
        loaded = [h.plugins[name] for h in server.hosts.values() if name in h.plugins]
        if not loaded:  # not running: kept for when it is enabled (a restart)
            report.restart.append(f"plugins.{name}")
            continue
        if not all(p.live_options for p in loaded):
            report.restart.append(f"plugins.{name}")
            continue
        options = plugin_options(new, type(loaded[0]), name)  # ConfigError: the caller's
        updates.extend((p, options) for p in loaded)
        tables[name] = new_tables.get(name, {})
        report.reloaded.append(f"plugins.{name}")
    return tables, updates


async def reload(server: XmppServer) -> ReloadReport:
    report = ReloadReport()
    old = server.config
    merged = old
    updates: list[tuple[Any, Any]] = []
    try:
        new = load(server.config_path)
        merged = _merge(old, new, report)
        tables, updates = _plugins(server, merged, new, report)
        merged = dataclasses.replace(merged, plugins=tables)
    except ConfigError as exc:
        report.errors.append(f"configuration not reloaded: {exc}")
        report.restart.clear()
        report.reloaded.clear()
        merged, updates = old, []
    if server.certs is not None:
        try:
            server.certs.reload(merged)
            if server.s2s is not None:
                server.s2s.contexts.reload(merged)
            report.reloaded.insert(0, "certificates")
        except TLSConfigError as exc:
            report.errors.append(f"certificates not reloaded: {exc}")
            if merged.tls != old.tls or any(
                    (merged.hosts[d].cert, merged.hosts[d].key) != (hc.cert, hc.key)
                    for d, hc in old.hosts.items() if d in merged.hosts):
                # The new TLS settings or paths are what failed: keep the old ones too.
                merged = dataclasses.replace(merged, tls=old.tls, hosts={
                    d: dataclasses.replace(hc, cert=old.hosts[d].cert, key=old.hosts[d].key)
                    for d, hc in merged.hosts.items()})
    _apply(server, old, merged, report)
    try:  # after logrotate moved it away (contrib/logrotate/xmppd)
        reopened = logs.reopen()
        if reopened is not None:
            report.reloaded.append(f"log file ({reopened})")
    except OSError as exc:
        report.errors.append(f"log file not reopened: {exc}")
    for plugin, options in updates:
        plugin.reload(options)
    log.info("reloaded: {what}", what=", ".join(report.reloaded) or "nothing")
    for key in report.restart:
        log.warn("{key} changed: restart the server to apply it", key=key)
    for problem in report.errors:
        log.error("reload: {problem}", problem=problem)
    return report


def _apply(server: XmppServer, old: ServerConfig, cfg: ServerConfig,
           report: ReloadReport) -> None:
    server.config = cfg
    if cfg.log.level != old.log.level:
        logs.set_level(cfg.log.level)
        report.reloaded.append(f"log.level ({cfg.log.level})")
    if cfg.auth != old.auth:
        auth = cfg.auth
        server.auth_guard.set_policy(GuardPolicy(
            ban_after=auth.ban_after, account_ban_after=auth.account_ban_after,
            ban_window=auth.ban_window, ban_time=auth.ban_time,
            max_unauthenticated_per_ip=auth.max_unauthenticated_per_ip,
            exempt_networks=tuple(auth.exempt_networks)))
        server.accounts.iterations = auth.iteration_count
        report.reloaded.append("auth")
    for key in ("tls", "limits"):
        if getattr(cfg, key) != getattr(old, key):
            report.reloaded.append(key)
    if any(cfg.hosts[d].admins != hc.admins for d, hc in old.hosts.items() if d in cfg.hosts):
        report.reloaded.append("admins")
    if any(cfg.hosts[d].contact != hc.contact for d, hc in old.hosts.items()
           if d in cfg.hosts):
        report.reloaded.append("contact")
