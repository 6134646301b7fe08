"""``xmppd check``: validate plugins, certificates and storage; name every problem found."""

from __future__ import annotations

import sys

from sqlalchemy import text

from xmppd.config import ConfigError, ServerConfig
from xmppd.plugin import PluginError, order, plugin_options
from xmppd.tls import check_cert, find_cert


def check_plugins(cfg: ServerConfig) -> list[str]:
    problems: list[str] = []
    known: set[str] = set()
    for domain in cfg.hosts:
        try:
            for cls in order(cfg.enabled_plugins(domain)):
                key = cls.name or cls.__module__.rsplit(".", 1)[-1]
                known.add(key)
                plugin_options(cfg, cls, key)
        except (PluginError, ConfigError) as exc:
            problems.append(str(exc))
    for key in cfg.plugins:
        if key != "enabled" and key not in known:
            problems.append(f"plugins.{key}: options given for a plugin that is not enabled")
    return problems


def check_storage(cfg: ServerConfig) -> list[str]:
    from storage.sql import Database

    url = cfg.storage_url
    try:
        db = Database(url, 1)
        shown = db.url.render_as_string(hide_password=True)
        db.migrate()
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        db.stop()
    except Exception as exc:
        return [f"storage.url: {url.split('@')[-1]}: {type(exc).__name__}: {exc}"]
    print(f"ok: storage {shown} reachable, schema migrated to head")
    return []


def check_cluster(cfg: ServerConfig) -> list[str]:
    """A cluster needs a shared database (not a SQLite file) and a reachable Redis."""
    import importlib.util
    import socket
    from urllib.parse import urlsplit

    c = cfg.cluster
    if not c.redis_url:
        return []
    problems: list[str] = []
    if cfg.storage_url.startswith("sqlite"):
        problems.append("cluster.redis_url: nodes must share a database; set storage.url to "
                        "PostgreSQL or MariaDB")
    if importlib.util.find_spec("txredisapi") is None:
        problems.append("cluster.redis_url: txredisapi is not installed: "
                        "pip install 'xmppd[cluster]'")
    url = urlsplit(c.redis_url)
    if url.scheme != "redis":
        return [*problems, f"cluster.redis_url: expected redis://host:port/db, not {c.redis_url}"]
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), 3) as s:
            s.sendall(b"PING\r\n")
            if not s.recv(64).startswith(b"+PONG"):
                problems.append(f"cluster.redis_url: {c.redis_url} does not answer PING")
    except OSError as exc:
        problems.append(f"cluster.redis_url: {c.redis_url}: {exc}")
    if not problems:
        print(f"ok: cluster: Redis at {c.redis_url} answers")
    return problems


def run_checks(cfg: ServerConfig) -> int:
    problems = check_plugins(cfg)
    for domain in cfg.hosts:
        paths = find_cert(cfg, domain)
        if paths is None:
            if cfg.tls.self_signed:
                print(f"note: {domain}: no certificate; a self-signed one will be generated "
                      f"in {cfg.resolve(cfg.data_dir) / 'certs'} (clients will warn)")
            else:
                problems.append(f"hosts.{domain}: no certificate found and tls.self_signed "
                                "is false")
            continue
        found = check_cert(paths, domain)
        problems.extend(f"hosts.{domain}: {p}" for p in found)
        if not found:
            print(f"ok: {domain}: certificate {paths.cert}")
    problems.extend(check_storage(cfg))
    problems.extend(check_cluster(cfg))
    if cfg.federation.enabled:
        from federation.check import check_federation

        fed_errors, fed_warnings = check_federation(cfg)
        problems.extend(fed_errors)
        for w in fed_warnings:
            print(f"warning: {w}")
        if not fed_errors and not fed_warnings:
            print("ok: federation: DNS records and certificates in place")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        return 1
    print("ok: configuration valid")
    return 0
