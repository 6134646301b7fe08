"""What every scenario shares: user names, run ids, the measured phase, the verdict."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

from bench.stats import Meter, rss_kib
from bench.xmpp import Connection


def user_names(args: argparse.Namespace, count: int, offset: int | None = None) -> list[str]:
    """Accounts ``<prefix><offset+i>``, created beforehand with ``create-users``."""
    start = args.user_offset if offset is None else offset
    return [f"{args.users_prefix}{start + i}" for i in range(count)]


def run_id() -> str:
    """Tags every body of this run, so stanzas left over from earlier runs (offline queues,
    room history, archives) are recognised as stale instead of counting as duplicates."""
    return "r" + secrets.token_hex(4)


def meter(args: argparse.Namespace) -> Meter:
    return Meter(tuple(args.server_pids), tuple(args.server_cpus) if args.server_pids else ())


def server_rss_kib(args: argparse.Namespace) -> int | None:
    """Resident memory of the server (all its processes, for a cluster on one machine)."""
    return sum(rss_kib(p) for p in args.server_pids) if args.server_pids else None


def verdict(result: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """Mark the result complete only if nothing was lost, duplicated or refused."""
    if result.get("lost"):
        problems.append(f"{result['lost']} lost")
    if result.get("duplicated"):
        problems.append(f"{result['duplicated']} duplicated")
    result["complete"] = not problems
    if problems:
        result["failure"] = "; ".join(problems)
    return result


async def wait_until(done: Callable[[], bool], timeout: float, idle: float | None = None,
                     progress: Callable[[], int] | None = None) -> bool:
    """Poll ``done``; give up after ``timeout`` or after ``idle`` seconds without progress."""
    start = last_change = time.monotonic()
    last = progress() if progress else 0
    while not done():
        now = time.monotonic()
        if now - start > timeout:
            return False
        if progress is not None and idle is not None:
            cur = progress()
            if cur != last:
                last, last_change = cur, now
            elif now - last_change > idle:
                return False
        await asyncio.sleep(0.02)
    return True


def close_all(conns: list[Connection]) -> None:
    for c in conns:
        c.close()


def dropped(conns: list[Connection]) -> list[str]:
    """Reasons of connections that closed while they should have stayed up."""
    return [f"{c.bare}: {c.close_reason}" for c in conns if c.closed]


def tls_info(conns: list[Connection]) -> str:
    return conns[0].tls_version if conns and conns[0].tls_version else "none"
