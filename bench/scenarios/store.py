"""Scenarios that need server storage: ``offline`` (RFC 6121 §8.5.2 + XEP-0160) and ``mam``
(XEP-0313 with XEP-0059 paging)."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.scenarios.common import close_all, meter, run_id, user_names, verdict, wait_until
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

NS_MAM = "urn:xmpp:mam:2"
NS_RSM = "http://jabber.org/protocol/rsm"


async def offline(args: argparse.Namespace, cfg: ClientConfig) -> dict[str, Any]:
    """Senders (online) send ``messages`` chat messages to recipients that are not logged in;
    every ``batch`` messages a ping round trip acts as the barrier that bounds what is in
    flight and marks them processed (store rate = messages / time to the last barrier; a
    server that stores asynchronously may look faster here than it is durable). Then the
    recipients log in with initial presence and must receive each message exactly once
    (drain rate = messages / time from the first login to the last message)."""
    s_count, r_count = args.senders, args.recipients
    senders, _ = await open_sessions(cfg, user_names(args, s_count), args.concurrency)
    recipients = user_names(args, r_count, args.recipients_offset)
    rbare = [f"{u}@{cfg.domain}" for u in recipients]
    run = run_id()
    errors: list[str] = []
    pair_seq: dict[tuple[int, int], int] = {}

    def on_sender(el: El) -> None:
        if el.name == "message" and el.attrs.get("type") == "error":
            errors.append(error_condition(el))

    for c in senders:
        c.set_handler(on_sender)
    per_sender = [args.messages // s_count + (1 if i < args.messages % s_count else 0)
                  for i in range(s_count)]

    async def send_all(s: int) -> None:
        conn = senders[s]
        for k in range(per_sender[s]):
            r = (s + k) % r_count
            seq = pair_seq.get((r, s), 0)
            pair_seq[(r, s)] = seq + 1
            conn.send(f"<message to='{rbare[r]}' type='chat' id='o{k}'>"
                      f"<body>{run} {s} {seq} {time.perf_counter_ns()}</body></message>")
            if (k + 1) % args.batch == 0:
                await conn.ping(timeout=max(cfg.timeout, 120.0))
        await conn.ping(timeout=max(cfg.timeout, 120.0))

    m = meter(args)
    m.start()
    await asyncio.gather(*(send_all(s) for s in range(s_count)))
    stored = m.stop()
    close_all(senders)
    sent = sum(per_sender)
    problems: list[str] = []
    if errors:
        problems.append(f"{len(errors)} messages refused for offline users, first: {errors[0]}")
    await asyncio.sleep(1.0)

    trackers: dict[tuple[int, int], SeqTracker] = {k: SeqTracker() for k in pair_seq}
    counts = {"stale": 0, "received": 0}
    last = [0.0]
    rindex = {b: i for i, b in enumerate(rbare)}

    def on_recipient(el: El) -> None:
        if el.name != "message":
            return
        body = el.find("body")
        if body is None:
            return
        parts = body.text.split()
        r = rindex.get(el.attrs.get("to", "").split("/", 1)[0])
        if len(parts) != 4 or parts[0] != run or r is None:
            counts["stale"] += 1
            return
        t = trackers.get((r, int(parts[1])))
        if t is None:
            counts["stale"] += 1
            return
        if t.add(int(parts[2])):
            counts["received"] += 1
            last[0] = time.perf_counter()

    m.start()
    t0 = time.perf_counter()
    drained_conns: list[Connection] = []
    sem = asyncio.Semaphore(args.concurrency)

    async def drain_one(i: int) -> None:
        conn = Connection(cfg, recipients[i], "bench")
        drained_conns.append(conn)
        async with sem:
            await conn.login()
            conn.set_handler(on_recipient)
            conn.send("<presence/>")  # RFC 6121 §4.2: initial presence triggers delivery

    try:
        await asyncio.gather(*(drain_one(i) for i in range(r_count)))
        await wait_until(lambda: counts["received"] >= sent, args.drain_timeout, idle=10.0,
                         progress=lambda: counts["received"])
    except XmppError as exc:
        problems.append(f"recipient login failed: {exc}")
    drained = m.stop()
    close_all(drained_conns)
    drain_s = (last[0] - t0) if last[0] else None
    result: dict[str, Any] = {
        "messages": sent,
        "senders": s_count,
        "recipients": r_count,
        "store_s": stored["wall_s"],
        "store_per_s": round(sent / stored["wall_s"], 1) if not errors else None,
        "drain_s": round(drain_s, 3) if drain_s else None,
        "drain_per_s": round(counts["received"] / drain_s, 1) if drain_s else None,
        "received": counts["received"],
        "lost": sent - counts["received"],
        "duplicated": sum(t.dups for t in trackers.values()),
        "stale": counts["stale"],
        "meter": stored,
        "drain_meter": drained,
    }
    return verdict(result, problems)


async def _populate(args: argparse.Namespace, cfg: ClientConfig, owner: Connection,
                    problems: list[str]) -> dict[str, Any]:
    """Senders send ``populate`` chat messages to the (online) archive owner, ``window`` in
    flight each; the owner's archive grows by that many."""
    senders, _ = await open_sessions(cfg, user_names(args, args.senders, args.user_offset + 1),
                                     args.concurrency)
    run = run_id()
    share = [args.populate // len(senders) + (1 if i < args.populate % len(senders) else 0)
             for i in range(len(senders))]
    sent = [0] * len(senders)
    trackers = [SeqTracker() for _ in senders]
    index = {c.bare: i for i, c in enumerate(senders)}
    errors: list[str] = []

    def send(s: int) -> None:
        if sent[s] < share[s]:
            seq = sent[s]
            sent[s] += 1
            senders[s].send(f"<message to='{owner.bare}' type='chat' id='a{seq}'>"
                            f"<body>{run} {seq} archived message number {seq}</body></message>")

    def on_owner(el: El) -> None:
        if el.name != "message" or el.find("result") is not None:
            return
        body = el.find("body")
        s = index.get(el.attrs.get("from", "").split("/", 1)[0])
        if body is None or s is None or not body.text.startswith(run + " "):
            return
        if trackers[s].add(int(body.text.split()[1])):
            send(s)

    def on_sender(el: El) -> None:
        if el.name == "message" and el.attrs.get("type") == "error":
            errors.append(error_condition(el))

    owner.set_handler(on_owner)
    for c in senders:
        c.set_handler(on_sender)
    m = meter(args)
    m.start()
    for s in range(len(senders)):
        for _ in range(args.window):
            send(s)
    def total() -> int:
        return sum(t.received for t in trackers)

    await wait_until(lambda: total() >= args.populate, 24 * 3600.0, idle=args.drain_timeout,
                     progress=total)
    measured = m.stop()
    close_all(senders)
    lost = args.populate - total()
    if lost or errors:
        problems.append(f"populating: {lost} lost, {len(errors)} errors "
                        f"{errors[:1]}")
    return {"populated": total(), "populate_s": measured["wall_s"],
            "populate_per_s": round(total() / measured["wall_s"], 1),
            "populate_duplicated": sum(t.dups for t in trackers)}


async def mam(args: argparse.Namespace, cfg: ClientConfig) -> dict[str, Any]:
    """Page backwards through the owner's archive like a client scrolling up (RSM ``before``),
    ``page_size`` per query, restarting at the newest page when the start is reached; every
    page must be full unless the server says it is the last, and no archive id may repeat
    within one sweep. Latency is from the IQ sent to its result (after all the forwarded
    messages)."""
    problems: list[str] = []
    owner_conns, _ = await open_sessions(cfg, user_names(args, 1), 1)
    owner = owner_conns[0]
    result: dict[str, Any] = {"page_size": args.page_size}
    if args.populate:
        try:  # a server without MAM answers with an error: no need to fill anything
            i = new_id("probe")
            await owner.iq(f"<iq type='set' id='{i}'><query xmlns='{NS_MAM}'>"
                           f"<set xmlns='{NS_RSM}'><max>1</max></set></query></iq>", i)
        except XmppError as exc:
            close_all(owner_conns)
            return verdict({**result, "lost": 0, "duplicated": 0},
                           [f"MAM query refused: {exc}"])
        result.update(await _populate(args, cfg, owner, problems))
    pages: dict[str, list[str]] = {}

    def on_stanza(el: El) -> None:
        if el.name != "message":
            return
        res = el.find_ns("result", NS_MAM)
        if res is not None and res.get("queryid") in pages:
            pages[res.get("queryid")].append(res.get("id"))

    owner.set_handler(on_stanza)
    latencies: list[float] = []
    seen: set[str] = set()
    dups = short = sweeps = 0
    count: str | None = None
    before = ""
    m = meter(args)
    m.start()
    for _ in range(args.queries):
        qid = new_id("q")
        pages[qid] = []
        t0 = time.perf_counter()
        try:
            el = await owner.iq(
                f"<iq type='set' id='{qid}'><query xmlns='{NS_MAM}' queryid='{qid}'>"
                f"<set xmlns='{NS_RSM}'><max>{args.page_size}</max>"
                f"{f'<before>{before}</before>' if before else '<before/>'}</set></query></iq>",
                qid)
        except XmppError as exc:
            problems.append(f"MAM query refused: {exc}")
            break
        latencies.append(time.perf_counter() - t0)
        ids = pages.pop(qid)
        fin = el.find_ns("fin", NS_MAM)
        rsm = fin.find_ns("set", NS_RSM) if fin is not None else None
        if rsm is not None and rsm.find("count") is not None:
            count = rsm.find("count").text  # type: ignore[union-attr]
        complete = fin is not None and fin.get("complete") in ("true", "1")
        dups += sum(1 for i in ids if i in seen)
        seen.update(ids)
        if len(ids) < args.page_size and not complete:
            short += 1
        first = rsm.find("first") if rsm is not None else None
        if complete or not ids or first is None:
            before, sweeps = "", sweeps + 1
            seen.clear()
        else:
            before = first.text
    measured = m.stop()
    close_all(owner_conns)
    if short:
        problems.append(f"{short} pages shorter than {args.page_size} without complete='true'")
    result.update({
        "queries": len(latencies),
        "archive_count": int(count) if count and count.isdigit() else count,
        "sweeps": sweeps,
        "queries_per_s": round(len(latencies) / measured["wall_s"], 1) if latencies else None,
        **latency_summary(latencies),
        "lost": 0,
        "duplicated": dups,
        "meter": measured,
    })
    if args.queries and not latencies and not problems:
        problems.append("no query answered")
    return verdict(result, problems)
