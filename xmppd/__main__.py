"""Command line: ``xmppd run|adduser|passwd|deluser|users|cert|check``."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from xmppd import __version__
from xmppd.config import ConfigError, ServerConfig, load


def _config(args: argparse.Namespace) -> ServerConfig:
    path = args.config
    if path is None and Path("xmppd.toml").exists():
        path = "xmppd.toml"
    return load(path)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        pw = sys.stdin.readline().rstrip("\r\n")
    else:
        pw = getpass.getpass("Password: ")
        if getpass.getpass("Repeat: ") != pw:
            raise SystemExit("error: passwords do not match")
    if not pw:
        raise SystemExit("error: empty password")
    return pw


def _react(fn: Callable[[Any], Coroutine[Any, Any, int]]) -> int:
    """Run an async command on the reactor and return its exit code."""
    from twisted.internet import defer, task

    code = 0

    async def main(reactor: Any) -> None:
        nonlocal code
        code = await fn(reactor)

    try:
        task.react(lambda r: defer.Deferred.fromCoroutine(main(r)))
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    return code


def _storage(cfg: ServerConfig) -> Any:
    from storage.base import Storage
    from storage.sql import Database

    db = Database(cfg.storage_url, cfg.storage.pool_size)
    db.migrate()
    return Storage(db)


def _freeze_startup_objects() -> None:
    """Move everything allocated while starting (modules, plugins, configuration, the
    SQLAlchemy metadata: hundreds of thousands of objects) out of the cyclic collector's
    reach. They live as long as the process, yet every full collection walked all of them:
    measured under the ``login`` benchmark, 18 full collections in 12 s took up to 73 ms each,
    stalling every connection, which was most of the login p99."""
    import gc

    gc.collect()
    gc.freeze()


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if cfg.reactor == "turnwrite":
        from xmppd.reactor import install

        install()
    from twisted.internet import defer, reactor

    from xmppd import logs
    from xmppd.server import XmppServer

    logs.setup(cfg.log)
    server = XmppServer(cfg, reactor)
    status = {"code": 0}

    async def start() -> None:
        try:
            await server.start()
        except Exception as exc:
            print(f"error: cannot start: {exc}", file=sys.stderr)
            status["code"] = 1
            reactor.stop()
            return
        if args.ports_file:
            server.write_ports(args.ports_file)
        _freeze_startup_objects()

    reactor.callWhenRunning(lambda: defer.Deferred.fromCoroutine(start()))
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromCoroutine(server.stop()))
    reactor.run()
    return status["code"]


def cmd_adduser(args: argparse.Namespace) -> int:
    from xmppd.accounts import AccountError, Accounts, split_user

    cfg = _config(args)
    host, user = split_user(args.jid)
    if host not in cfg.hosts:
        raise SystemExit(f"error: {host} is not a host in the configuration")
    password = _password(args)

    async def run(_reactor: Any) -> int:
        accounts = Accounts(_storage(cfg), cfg.auth.iteration_count)
        try:
            created = await accounts.create(host, user, password)
        except AccountError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if not created:
            print(f"error: {user}@{host} already exists", file=sys.stderr)
            return 1
        print(f"created {user}@{host}")
        return 0

    return _react(run)


def cmd_passwd(args: argparse.Namespace) -> int:
    from xmppd.accounts import AccountError, Accounts, split_user

    cfg = _config(args)
    host, user = split_user(args.jid)
    password = _password(args)

    async def run(_reactor: Any) -> int:
        accounts = Accounts(_storage(cfg), cfg.auth.iteration_count)
        try:
            ok = await accounts.set_password(host, user, password)
        except AccountError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if not ok:
            print(f"error: no such user {user}@{host}", file=sys.stderr)
            return 1
        print(f"password changed for {user}@{host}")
        return 0

    return _react(run)


def cmd_deluser(args: argparse.Namespace) -> int:
    from xmppd.accounts import split_user

    cfg = _config(args)
    host, user = split_user(args.jid)

    async def run(_reactor: Any) -> int:
        storage = _storage(cfg)
        if not await storage.accounts.delete(host, user):
            print(f"error: no such user {user}@{host}", file=sys.stderr)
            return 1
        print(f"deleted {user}@{host} and all of its data")
        return 0

    return _react(run)


def cmd_users(args: argparse.Namespace) -> int:
    cfg = _config(args)

    async def run(_reactor: Any) -> int:
        for host, user in await _storage(cfg).accounts.list(args.domain):
            print(f"{user}@{host}")
        return 0

    return _react(run)


def cmd_roster(args: argparse.Namespace) -> int:
    from xmppd.accounts import split_user

    cfg = _config(args)
    host, user = split_user(args.jid)

    async def run(_reactor: Any) -> int:
        storage = _storage(cfg)
        if not await storage.accounts.exists(host, user):
            print(f"error: no such user {user}@{host}", file=sys.stderr)
            return 1
        version, items = await storage.roster.get(host, user)
        pending = await storage.roster.pending(host, user)
        print(f"roster of {user}@{host} (version {version}, {len(items)} items)")
        for item in sorted(items, key=lambda i: i.contact):
            flags = " ".join(f for f, on in (("ask", item.ask), ("approved", item.approved)) if on)
            groups = ", ".join(item.groups)
            print(f"  {item.contact:<40} {item.subscription:<5} {flags:<12} "
                  f"{item.name or '':<20} {groups}")
        for contact in pending:
            print(f"  {contact:<40} pending subscription request")
        return 0

    return _react(run)


def cmd_invite(args: argparse.Namespace) -> int:
    import json
    import secrets
    import time

    from xmppd.jid import JIDError, prepare_domain

    cfg = _config(args)
    try:
        domain = prepare_domain(args.domain)
    except JIDError as exc:
        raise SystemExit(f"error: invalid domain: {exc}") from None
    if domain not in cfg.hosts:
        raise SystemExit(f"error: {domain} is not a host in the configuration")
    token = secrets.token_urlsafe(18)
    record = json.dumps({"uses": args.uses, "expires": int(time.time() + args.days * 86400)})

    async def run(_reactor: Any) -> int:
        # Stored as a host-level record (username ""); the register plugin consumes it.
        await _storage(cfg).kv.set(domain, "", "invites", token, record)
        print(f"invite token for {domain} (uses: {args.uses}, valid {args.days} days):")
        print(token)
        print(f"xmpp:{domain}?register;preauth={token}")
        return 0

    return _react(run)


def cmd_cert(args: argparse.Namespace) -> int:
    from xmppd.jid import JIDError, prepare_domain
    from xmppd.tls import generate_self_signed

    try:
        domain = prepare_domain(args.domain)
    except JIDError as exc:
        raise SystemExit(f"error: invalid domain: {exc}") from None
    folder = Path(args.dir)
    generate_self_signed(domain, folder / f"{domain}.crt", folder / f"{domain}.key")
    print(f"wrote {folder / (domain + '.crt')} and {folder / (domain + '.key')} "
          f"(self-signed, valid for {domain} and *.{domain})")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from xmppd import features

    print(features.doap() if args.doap else features.markdown(), end="")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from xmppd.check import run_checks

    return run_checks(_config(args))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xmppd", description="xmppd XMPP server")
    p.add_argument("--version", action="version", version=f"xmppd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str
            ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("-c", "--config", help="config file (default: ./xmppd.toml if present, "
                        "else the built-in localhost defaults)")
        sp.set_defaults(func=fn)
        return sp

    run = add("run", cmd_run, "run the server")
    run.add_argument("--ports-file", help="write the bound ports as JSON to this file")
    for name, fn, h in (("adduser", cmd_adduser, "create an account"),
                        ("passwd", cmd_passwd, "change an account's password")):
        sp = add(name, fn, h)
        sp.add_argument("jid")
        sp.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input")
    add("deluser", cmd_deluser, "delete an account and all its data").add_argument("jid")
    add("users", cmd_users, "list accounts").add_argument("domain", nargs="?")
    add("roster", cmd_roster, "show an account's roster (friends)").add_argument("jid")
    inv = add("invite", cmd_invite, "create an in-band registration invite token (XEP-0401)")
    inv.add_argument("domain")
    inv.add_argument("--uses", type=int, default=1, help="registrations allowed (default 1)")
    inv.add_argument("--days", type=float, default=7.0, help="validity in days (default 7)")
    cert = add("cert", cmd_cert, "certificate tools")
    cert.add_argument("action", choices=["generate"])
    cert.add_argument("domain")
    cert.add_argument("--dir", default="certs", help="output folder (default: certs)")
    add("check", cmd_check, "validate configuration, certificates and storage")
    feats = add("features", cmd_features, "list implemented specifications (README table)")
    feats.add_argument("--doap", action="store_true", help="as a DOAP file instead")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"error: configuration: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
