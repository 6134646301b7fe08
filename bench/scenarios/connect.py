"""``idle``: memory per held connection; ``login``: full logins per second and their latency."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from typing import Any

from bench.scenarios.common import (
    close_all,
    dropped,
    meter,
    server_rss_kib,
    tls_info,
    user_names,
    verdict,
)
from bench.stats import latency_summary
from bench.xmpp import ClientConfig, Connection, open_sessions


async def idle(args: argparse.Namespace, cfg: ClientConfig) -> dict[str, Any]:
    """Hold N authenticated, available connections and read the server's VmRSS before and
    after. A few warm-up logins come first so lazily loaded code and TLS contexts are not
    charged to the connections."""
    n = args.connections
    users = user_names(args, n)
    problems: list[str] = []
    warm, _ = await open_sessions(cfg, users[:min(10, n)], args.concurrency, resource="warm")
    close_all(warm)
    await asyncio.sleep(1.0)
    before = server_rss_kib(args)
    m = meter(args)
    m.start()
    conns, times = await open_sessions(cfg, users, args.concurrency)
    connect_meter = m.stop()
    await asyncio.sleep(args.settle)
    after = server_rss_kib(args)
    await asyncio.sleep(args.hold)
    gone = dropped(conns)
    if gone:
        problems.append(f"{len(gone)} connections dropped while idle, first: {gone[0]}")
    after_hold = server_rss_kib(args)
    close_all(conns)
    await asyncio.sleep(0.2)
    result: dict[str, Any] = {
        "connections": n,
        "tls": tls_info(conns),
        "connect_s": connect_meter["wall_s"],
        "logins_per_s": round(n / connect_meter["wall_s"], 1),
        **latency_summary(times, "login_"),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "rss_after_hold_kib": after_hold,
        "rss_per_conn_kib": (round((after - before) / n, 2)
                             if before is not None and after is not None else None),
        "lost": len(gone),
        "duplicated": 0,
        "meter": connect_meter,
    }
    return verdict(result, problems)


async def login(args: argparse.Namespace, cfg: ClientConfig) -> dict[str, Any]:
    """Full logins (TCP, STARTTLS, SASL, bind) back to back from ``concurrency`` workers for
    ``duration`` seconds after ``warmup``; each closes its stream right after binding.
    Resources are unique so that no login replaces another (resource conflicts cost extra)."""
    users = user_names(args, args.users)
    counter = itertools.count()
    latencies: list[float] = []
    failures: list[str] = []
    t0 = time.perf_counter()
    t_measure = t0 + args.warmup
    t_end = t_measure + args.duration
    tls = ""
    m = meter(args)

    async def worker() -> None:
        nonlocal tls
        while time.perf_counter() < t_end:
            n = next(counter)
            conn = Connection(cfg, users[n % len(users)], f"l{n}")
            try:
                took = await conn.login()
            except Exception as exc:
                failures.append(f"{conn.bare}: {exc}")
                conn.close()
                continue
            tls = tls or conn.tls_version
            conn.close()
            done = time.perf_counter()
            if t_measure <= done <= t_end:
                latencies.append(took)

    async def measure() -> dict[str, Any]:
        await asyncio.sleep(max(0.0, t_measure - time.perf_counter()))
        m.start()
        await asyncio.sleep(max(0.0, t_end - time.perf_counter()))
        return m.stop()

    measured, *_ = await asyncio.gather(measure(), *(worker() for _ in range(args.concurrency)))
    await asyncio.sleep(0.2)
    result: dict[str, Any] = {
        "concurrency": args.concurrency,
        "users": args.users,
        "tls": tls or "none",
        "mechanism": cfg.mechanism,
        "duration_s": args.duration,
        "logins": len(latencies),
        "logins_per_s": round(len(latencies) / args.duration, 1),
        **latency_summary(latencies),
        "failed": len(failures),
        "lost": len(failures),
        "duplicated": 0,
        "meter": measured,
    }
    problems = [f"first failure: {failures[0]}"] if failures else []
    if not latencies:
        problems.append("no login completed")
    return verdict(result, problems)
