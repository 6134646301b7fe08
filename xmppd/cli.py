"""The administrative subcommands of ``xmppd``, one per operation of xmppd/ops.py.

Each asks the running server through its control socket (xmppd/control.py). When the server
is not running, the command says so on stderr and, if the operation can run against storage
alone (``Operation.offline``: accounts, the admin list, the message of the day ...), does
that; otherwise it exits with status 3. Other failures exit with status 1, bad usage with 2.

Arguments come from the operation's parameters: a required JID (or list of JIDs) is
positional, a password is asked for (or read from standard input with --password-stdin), a
required text is positional ("-" or nothing: standard input), the rest are options.
Host-wide operations take the host as an optional positional DOMAIN (or --domain when they
have positional arguments of their own); without it they act on every host.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import Any

from xmppd import control, ops
from xmppd.config import ServerConfig

NOT_RUNNING = 3


def _positional(p: ops.Param) -> bool:
    return (p.required and p.type in ("jid-single", "jid-multi", "text-multi", "text-single")) \
        or p.type == "jid-multi"


def _option(p: ops.Param) -> str:
    return "--" + p.name.replace("_", "-")


def add_operations(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add a subparser per operation (``add`` makes one with the common -c option)."""
    for op in ops.operations():
        name = op.cli_name
        if name is None:
            continue
        help_ = op.title + (" (also with the server stopped)" if op.offline else "")
        sp = add(name, run_operation, help_)
        sp.set_defaults(operation=op.name)
        positional = False
        for p in op.params:
            if not p.cli:
                continue
            if p.type == "text-private":
                sp.add_argument(f"--{p.name}-stdin", dest=f"{p.name}_stdin",
                                action="store_true",
                                help=f"read the {p.name} from the first line of standard input")
            elif _positional(p):
                positional = True
                multi = p.type == "jid-multi"
                sp.add_argument(p.name, metavar="JID" if p.type.startswith("jid") else
                                p.var.upper(), nargs=("+" if p.required else "*") if multi
                                else "?" if p.type == "text-multi" else None, help=p.label)
            else:
                sp.add_argument(_option(p), dest=p.name, help=p.label,
                                choices=[v for _label, v in p.options] or None)
        if op.scope == "host":
            if positional:
                sp.add_argument("--domain", help="the host (default: every host)")
            else:
                sp.add_argument("domain", nargs="?", help="the host (default: every host)")


def _password(args: argparse.Namespace, name: str) -> str:
    if getattr(args, f"{name}_stdin", False):
        pw = sys.stdin.readline().rstrip("\r\n")
    else:
        pw = getpass.getpass("Password: ")
        if getpass.getpass("Repeat: ") != pw:
            raise SystemExit("error: passwords do not match")
    if not pw:
        raise SystemExit("error: empty password")
    return pw


def _values(op: ops.Operation, args: argparse.Namespace) -> dict[str, list[str]]:
    raw: dict[str, list[str]] = {}
    for p in op.params:
        if not p.cli:
            continue
        if p.type == "text-private":
            raw[p.name] = [_password(args, p.name)]
            continue
        value = getattr(args, p.name, None)
        if p.type == "text-multi" and p.required and value in (None, "-"):
            if sys.stdin.isatty():
                print(f"{p.label} (end with Ctrl-D):", file=sys.stderr)
            value = sys.stdin.read()
        if value is None:
            continue
        raw[p.name] = list(value) if isinstance(value, list) else [value]
    return raw


def _domain(cfg: ServerConfig, args: argparse.Namespace) -> str | None:
    domain = getattr(args, "domain", None)
    if domain is None:
        return None
    from xmppd.jid import JIDError, prepare_domain

    try:
        domain = prepare_domain(domain)
    except JIDError as exc:
        raise SystemExit(f"error: invalid domain: {exc}") from None
    if domain not in cfg.hosts:
        raise SystemExit(f"error: {domain} is not a host in the configuration")
    return domain


def run_operation(args: argparse.Namespace) -> int:
    from xmppd.__main__ import _config

    op = ops.get(args.operation)
    cfg = _config(args)
    domain = _domain(cfg, args)
    raw = _values(op, args)
    try:
        answer = control.call(control.socket_path(cfg), op.name, raw, domain)
    except control.NotRunning as exc:
        if not op.offline:
            print(f"error: {exc}; `{op.cli_name}` needs it", file=sys.stderr)
            return NOT_RUNNING
        print(f"note: {exc}; working on the storage directly", file=sys.stderr)
        return _offline(op, cfg, domain, raw)
    except control.ControlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not answer.get("ok"):
        error = answer.get("error") or {}
        print(f"error: {error.get('text') or error.get('condition') or answer}",
              file=sys.stderr)
        return 1
    show(ops.Result.from_json(answer.get("result") or {}))
    return 0


def _offline(op: ops.Operation, cfg: ServerConfig, domain: str | None,
             raw: dict[str, list[str]]) -> int:
    from xmppd.__main__ import _react, _storage
    from xmppd.accounts import Accounts

    async def run(_reactor: Any) -> int:
        storage = _storage(cfg)
        ctx = ops.Context(cfg, storage, Accounts(storage, cfg.auth.iteration_count),
                          domain=domain, actor="command line")
        try:
            result = await ops.execute(op, ctx, raw)
        except ops.OpError as err:
            print(f"error: {err.text}", file=sys.stderr)
            return 1
        show(result)
        return 0

    return _react(run)


def show(result: ops.Result) -> None:
    """Print a result: its line, its table, and (without a line) its fields."""
    if result.message:
        print(result.message)
    if result.table is not None and result.table.rows:
        for line in result.table.lines():
            print(line)
    if not result.message:
        if len(result.fields) == 1:
            for value in result.fields[0].values:
                print(value)
        else:
            for f in result.fields:
                if len(f.values) == 1:
                    print(f"{f.label or f.var}: {f.values[0]}")
                else:
                    print(f"{f.label or f.var}:")
                    for value in f.values:
                        print(f"  {value}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
