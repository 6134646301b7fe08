"""``muc``: one XEP-0045 room, every occupant a sender, groupchat fan-out to all occupants.

The first occupant creates the room (and submits the instant-room form if the service asks,
§10.1.2); the others join with ``<history maxstanzas='0'/>``. Then ``window`` groupchat
messages are kept in flight room-wide: a sender's own reflected copy frees a slot and the
next occupant in turn sends. Every occupant must receive every message exactly once; the
figure is delivered stanzas per second (messages x occupants).
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
from bench.xmpp import (
    ClientConfig,
    Connection,
    El,
    XmppError,
    error_condition,
    new_id,
    open_sessions,
)

NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"


def _status_codes(el: El) -> set[str]:
    x = el.find_ns("x", NS_MUC_USER)
    return {s.get("code") for s in x.findall("status")} if x is not None else set()


async def join(conn: Connection, room: str, nick: str, joined: asyncio.Future[set[str]],
               timeout: float) -> float:
    """Send the join presence and wait for our own presence (status 110)."""
    t0 = time.perf_counter()
    conn.send(f"<presence to='{room}/{nick}'><x xmlns='{NS_MUC}'>"
              f"<history maxstanzas='0'/></x></presence>")
    try:
        codes = await asyncio.wait_for(joined, timeout)
    except TimeoutError:
        raise XmppError(f"{nick} got no self-presence from {room}") from None
    if "201" in codes:  # a new room: accept the default configuration (instant room)
        i = new_id("cfg")
        await conn.iq(f"<iq type='set' id='{i}' to='{room}'><query xmlns='{NS_MUC_OWNER}'>"
                      f"<x xmlns='jabber:x:data' type='submit'/></query></iq>", i)
    return time.perf_counter() - t0


async def muc(args: argparse.Namespace, cfg: ClientConfig) -> dict[str, Any]:
    n: int = args.occupants
    conns, _ = await open_sessions(cfg, user_names(args, n), args.concurrency)
    run = run_id()
    service = args.muc_service or f"conference.{cfg.domain}"
    room = f"bench-{run}@{service}"
    nicks = [f"o{i}" for i in range(n)]
    index = {f"{room}/{nick}": i for i, nick in enumerate(nicks)}
    trackers = [[SeqTracker() for _ in range(n)] for _ in range(n)]  # [receiver][sender]
    sent = [0] * n
    joined: list[asyncio.Future[set[str]]] = [
        asyncio.get_running_loop().create_future() for _ in range(n)]
    latencies: list[float] = []
    state = {"sending": False, "measuring": False, "counted": 0, "errors": 0, "stale": 0,
             "turn": 0}
    first_error: list[str] = []
    perf_ns = time.perf_counter_ns
    prefix = f"<message to='{room}' type='groupchat'><body>{run} "

    def send_next() -> None:
        s = state["turn"] % n
        state["turn"] += 1
        seq = sent[s]
        sent[s] = seq + 1
        conns[s].send(f"{prefix}{s} {seq} {perf_ns()}</body></message>")

    def handler(r: int) -> Any:
        mine = trackers[r]

        def on_stanza(el: El) -> None:
            name = el.name
            if name == "presence":
                if el.attrs.get("from") == f"{room}/{nicks[r]}" and not joined[r].done():
                    if el.attrs.get("type") == "error":
                        joined[r].set_exception(XmppError(f"join refused: {error_condition(el)}"))
                    else:
                        codes = _status_codes(el)
                        if "110" in codes:
                            joined[r].set_result(codes)
                return
            if name != "message":
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
            s = index.get(el.attrs.get("from", ""))
            if len(parts) != 4 or parts[0] != run or s is None or int(parts[1]) != s:
                state["stale"] += 1
                return
            if mine[s].add(int(parts[2])):
                if state["measuring"]:
                    latencies.append((perf_ns() - int(parts[3])) / 1e9)
                    state["counted"] += 1
                if s == r and state["sending"]:
                    send_next()

        return on_stanza

    for r, c in enumerate(conns):
        c.set_handler(handler(r))
    problems: list[str] = []
    join_times: list[float] = []
    try:
        join_times.append(await join(conns[0], room, nicks[0], joined[0], cfg.timeout))
        sem = asyncio.Semaphore(args.concurrency)

        async def one(i: int) -> None:
            async with sem:
                join_times.append(await join(conns[i], room, nicks[i], joined[i], cfg.timeout))

        await asyncio.gather(*(one(i) for i in range(1, n)))
    except XmppError as exc:
        close_all(conns)
        return verdict({"occupants": n, "room": room, "lost": 0, "duplicated": 0},
                       [f"cannot use {service}: {exc}"])
    await asyncio.sleep(0.5)  # let the join presence broadcasts finish
    m = meter(args)
    state["sending"] = True
    for _ in range(args.window):
        send_next()
    await asyncio.sleep(args.warmup)
    state["measuring"] = True
    m.start()
    await asyncio.sleep(args.duration)
    state["measuring"] = False
    measured = m.stop()
    state["sending"] = False
    def expected() -> int:
        return sum(sent) * n

    def received() -> int:
        return sum(t.received for row in trackers for t in row)

    await wait_until(lambda: received() >= expected(), args.drain_timeout, idle=5.0,
                     progress=received)
    gone = dropped(conns)
    close_all(conns)
    if gone:
        problems.append(f"{len(gone)} connections dropped, first: {gone[0]}")
    if state["errors"]:
        problems.append(f"{state['errors']} error replies, first: {first_error[0]}")
    reordered = sum(t.reordered for row in trackers for t in row)
    if reordered:
        problems.append(f"{reordered} reordered")
    result: dict[str, Any] = {
        "occupants": n,
        "window": args.window,
        "tls": tls_info(conns),
        "duration_s": args.duration,
        **latency_summary(join_times, "join_"),
        "messages": sum(sent),
        "expected": expected(),
        "received": received(),
        "lost": expected() - received(),
        "duplicated": sum(t.dups for row in trackers for t in row),
        "reordered": reordered,
        "errors": state["errors"],
        "stale": state["stale"],
        "stanzas_per_s": round(state["counted"] / measured["wall_s"], 1),
        **latency_summary(latencies),
        "meter": measured,
    }
    return verdict(result, problems)
