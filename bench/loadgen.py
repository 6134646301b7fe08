"""XMPP load generator: ``python -m bench.loadgen SCENARIO [options]`` (run from the repo root).

Prints exactly one JSON line with the figures and ``complete``/``lost``/``duplicated``;
exits 1 when the run was not complete (or failed), so nothing silently looks fast.
See bench/README.md for what each scenario measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from bench.scenarios import chat, connect, muc, reconnect, store, users
from bench.xmpp import MECHANISMS, ClientConfig

Scenario = Callable[[argparse.Namespace, ClientConfig], Awaitable[dict[str, Any]]]
SCENARIOS: dict[str, Scenario] = {
    "idle": connect.idle,
    "login": connect.login,
    "reconnect": reconnect.reconnect,
    "pairs": chat.pairs,
    "muc": muc.muc,
    "offline": store.offline,
    "mam": store.mam,
}



def int_list(text: str) -> list[int]:
    """"12" or "12,13": taskset-style lists of pids or cores."""
    return [int(x) for x in text.split(",") if x.strip()]

def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("server and accounts")
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument("--port", type=int, default=5222)
    g.add_argument("--domain", default="localhost")
    g.add_argument("--users-prefix", default="u", help="accounts are <prefix><n>")
    g.add_argument("--user-offset", type=int, default=0, help="first <n> used")
    g.add_argument("--password", default="bench")
    g.add_argument("--tls", action=argparse.BooleanOptionalAction, default=True,
                   help="STARTTLS before authenticating (default on)")
    g.add_argument("--mechanism", choices=MECHANISMS, default="SCRAM-SHA-1")
    g.add_argument("--ca-file", help="verify the server certificate (default: not verified)")
    g.add_argument("--concurrency", type=int, default=50, help="logins in parallel")
    g.add_argument("--sm", action="store_true",
                   help="enable XEP-0198 stream management with resumption after binding")
    g.add_argument("--timeout", type=float, default=30.0, help="per protocol step")
    g = common.add_argument_group("measurement")
    g.add_argument("--server-pid", type=int_list, default=[], dest="server_pids",
                   help="read these processes' CPU time and VmRSS (comma-separated: the nodes "
                   "of a cluster are summed)")
    g.add_argument("--server-cpu", type=int_list, default=[0], dest="server_cpus",
                   help="cores the server is pinned to (comma-separated)")
    g.add_argument("--label", default="", help="copied into the JSON line")
    g.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=True,
                   help="use uvloop when installed (default)")

    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    sub = p.add_subparsers(dest="scenario", required=True)

    s = sub.add_parser("idle", parents=[common], help="server memory per held connection")
    s.add_argument("--connections", type=int, default=1000)
    s.add_argument("--settle", type=float, default=3.0, help="seconds before reading RSS")
    s.add_argument("--hold", type=float, default=5.0, help="then seconds more, all must stay")

    s = sub.add_parser("login", parents=[common], help="logins per second")
    s.add_argument("--users", type=int, default=200, help="accounts cycled through")
    _timed(s, duration=10.0)

    s = sub.add_parser("reconnect", parents=[common],
                       help="reconnections (TCP+TLS+auth+bind): legacy, SASL2 or FAST")
    s.add_argument("--auth", choices=("legacy", "sasl2", "fast"), default="fast")
    _timed(s, duration=10.0)

    s = sub.add_parser("pairs", parents=[common], help="one-to-one chat")
    s.add_argument("--pairs", type=int, default=50)
    s.add_argument("--window", type=int, default=4, help="in flight per direction")
    _timed(s, duration=10.0)

    s = sub.add_parser("muc", parents=[common], help="one room, groupchat fan-out")
    s.add_argument("--occupants", type=int, default=50)
    s.add_argument("--window", type=int, default=10, help="groupchat messages in flight")
    s.add_argument("--muc-service", help="default conference.<domain>")
    _timed(s, duration=10.0)

    s = sub.add_parser("offline", parents=[common], help="store, then drain offline messages")
    s.add_argument("--messages", type=int, default=10000)
    s.add_argument("--senders", type=int, default=10)
    s.add_argument("--recipients", type=int, default=100)
    s.add_argument("--recipients-offset", type=int, default=5000,
                   help="first <n> of the recipients (they must not be logged in)")
    s.add_argument("--batch", type=int, default=100, help="messages per sender between pings")
    s.add_argument("--drain-timeout", type=float, default=120.0)

    s = sub.add_parser("mam", parents=[common], help="XEP-0313 page queries")
    s.add_argument("--populate", type=int, default=0,
                   help="first send this many messages into the archive (0: use what is there)")
    s.add_argument("--senders", type=int, default=10)
    s.add_argument("--window", type=int, default=10, help="in flight per sender when populating")
    s.add_argument("--queries", type=int, default=200)
    s.add_argument("--page-size", type=int, default=50)
    s.add_argument("--drain-timeout", type=float, default=60.0)

    s = sub.add_parser("create-users", parents=[common], help="make the accounts")
    s.add_argument("--kind", choices=("xmppd", "ibr"), required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--storage-url", help="xmppd: SQLAlchemy URL of its database")
    return p


def _timed(s: argparse.ArgumentParser, duration: float) -> None:
    s.add_argument("--duration", type=float, default=duration, help="measured seconds")
    s.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    s.add_argument("--drain-timeout", type=float, default=30.0,
                   help="after sending stops, wait this long for everything to arrive")


def client_config(args: argparse.Namespace) -> ClientConfig:
    return ClientConfig(host=args.host, port=args.port, domain=args.domain,
                        password=args.password, tls=args.tls, mechanism=args.mechanism,
                        ca_file=args.ca_file, timeout=args.timeout,
                        stream_management=args.sm)


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = client_config(args)
    if args.scenario == "create-users":
        if args.kind == "xmppd":
            if not args.storage_url:
                raise SystemExit("--storage-url is required with --kind xmppd")
            return users.create_xmppd(args)
        return await users.create_ibr(args, cfg)
    return await SCENARIOS[args.scenario](args, cfg)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    started = time.time()
    head: dict[str, Any] = {"scenario": args.scenario}
    if args.label:
        head["label"] = args.label
    runner: Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]] = asyncio.run
    head["loop"] = "asyncio"
    if args.uvloop:
        try:
            import uvloop
        except ImportError:  # the `bench` extra is not installed (e.g. the CI test env)
            print("uvloop not installed: using the default asyncio loop", file=sys.stderr)
        else:
            runner, head["loop"] = uvloop.run, "uvloop"
    try:
        result = runner(_run(args))
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        result = {"complete": False, "failure": f"{type(exc).__name__}: {exc}"}
    out = {**head, **result, "started": round(started, 3)}
    print(json.dumps(out), flush=True)
    return 0 if out.get("complete") else 1


if __name__ == "__main__":
    sys.exit(main())
