"""``pairs``: one-to-one chat throughput and latency with a bounded in-flight window.

User 2i and user 2i+1 talk to each other's bare JID. Each direction keeps ``window``
messages in flight: a delivery lets the sender send the next one, so the rate is set by the
server, and latency by Little's law is in-flight / throughput. Bodies carry
``<run> <seq> <send time ns>``; every direction is checked for loss, duplicates and order.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.scenarios.common import (
    close_all,
    dropped,
    meter,
    run_id,
    tls_info,
    user_names,
    verdict,
    wait_until,
)
from bench.stats import SeqTracker, latency_summary
from bench.xmpp import ClientConfig, El, error_condition, open_sessions


async def pairs(args: argparse.Namespace, cfg: ClientConfig) -> dict[str, Any]:
    k = args.pairs
    conns, _ = await open_sessions(cfg, user_names(args, 2 * k), args.concurrency)
    run = run_id()
    n = 2 * k
    trackers = [SeqTracker() for _ in range(n)]  # by direction = sender index
    sent = [0] * n
    direction = {c.bare: i for i, c in enumerate(conns)}
    prefixes = [f"<message to='{conns[i ^ 1].bare}' type='chat' id='" for i in range(n)]
    latencies: list[float] = []
    state = {"sending": True, "measuring": False, "counted": 0, "errors": 0, "stale": 0}
    first_error: list[str] = []
    perf_ns = time.perf_counter_ns

    def send(d: int) -> None:
        seq = sent[d]
        sent[d] = seq + 1
        conns[d].send(f"{prefixes[d]}{seq}'><body>{run} {seq} {perf_ns()}</body></message>")

    def on_stanza(el: El) -> None:
        if el.name != "message":
            return
        if el.attrs.get("type") == "error":
            state["errors"] += 1
            if not first_error:
                first_error.append(error_condition(el))
            return
        body = el.find("body")
        if body is None:
            return
        parts = body.text.split()
        if len(parts) != 3 or parts[0] != run:
            state["stale"] += 1
            return
        d = direction.get(el.attrs.get("from", "").split("/", 1)[0])
        if d is None:
            state["stale"] += 1
            return
        if trackers[d].add(int(parts[1])):
            if state["measuring"]:
                latencies.append((perf_ns() - int(parts[2])) / 1e9)
                state["counted"] += 1
            if state["sending"]:
                send(d)

    for c in conns:
        c.set_handler(on_stanza)
    m = meter(args)
    for d in range(n):
        for _ in range(args.window):
            send(d)
    await asyncio.sleep(args.warmup)
    state["measuring"] = True
    m.start()
    await asyncio.sleep(args.duration)
    state["measuring"] = False
    measured = m.stop()
    state["sending"] = False
    def total() -> int:
        return sum(t.received for t in trackers)

    await wait_until(lambda: total() >= sum(sent), args.drain_timeout, idle=5.0, progress=total)
    gone = dropped(conns)
    close_all(conns)
    problems = [f"{len(gone)} connections dropped, first: {gone[0]}"] if gone else []
    if state["errors"]:
        problems.append(f"{state['errors']} error replies, first: {first_error[0]}")
    counted = state["counted"]
    result: dict[str, Any] = {
        "pairs": k,
        "window": args.window,
        "tls": tls_info(conns),
        "duration_s": args.duration,
        "sent": sum(sent),
        "received": total(),
        "lost": sum(sent) - total(),
        "duplicated": sum(t.dups for t in trackers),
        "reordered": sum(t.reordered for t in trackers),
        "errors": state["errors"],
        "stale": state["stale"],
        "msgs_per_s": round(counted / measured["wall_s"], 1),
        **latency_summary(latencies),
        "meter": measured,
    }
    if result["reordered"]:
        problems.append(f"{result['reordered']} reordered (RFC 6120 §10.1)")
    return verdict(result, problems)
