"""Command line: ``xmppd run|cert|check|features|invite|backup|restore|export|import`` and
one subcommand per administrative operation (xmppd/ops.py; xmppd/cli.py builds and runs
them)."""

from __future__ import annotations

import argparse
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
    from storage.facade import Storage
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
    import signal

    from twisted.internet import defer, reactor

    from xmppd import logs
    from xmppd.server import XmppServer

    logs.setup(cfg.log)
    path = args.config if args.config is not None or not Path("xmppd.toml").exists() \
        else "xmppd.toml"
    server = XmppServer(cfg, reactor, config_path=path)
    status = {"code": 0}

    def hangup(_signum: int, _frame: Any) -> None:
        # SIGHUP: what `xmppd reload` does (certificates, log level, ... see xmppd/reload.py).
        reactor.callFromThread(  # type: ignore[attr-defined]
            lambda: defer.Deferred.fromCoroutine(server.reload()))

    signal.signal(signal.SIGHUP, hangup)

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
    if server.restart_requested and status["code"] == 0:
        # XEP-0133 restart: the same command again, in this process (same pid, so a service
        # manager sees no exit); sockets and files are not inherited (close-on-exec).
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "xmppd", *args.argv])
    return status["code"]


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

    run = add("run", cmd_run, "run the server (SIGHUP: reload)")
    run.add_argument("--ports-file", help="write the bound ports as JSON to this file")
    from xmppd import cli

    cli.add_operations(sub, add)
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
    from xmppd.backup import add_commands

    add_commands(add)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
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
