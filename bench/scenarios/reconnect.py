"""``reconnect``: what a phone's reconnection costs (new TCP + STARTTLS + authentication +
resource binding), with ``--auth``:

* ``legacy``: RFC 6120 SASL (SCRAM), stream restart, RFC 6120 bind: what every server offers;
* ``sasl2``: SASL2 (XEP-0388) SCRAM with Bind 2 (XEP-0386) inline: no restart, no bind IQ;
* ``fast``: SASL2 with a FAST token (XEP-0484, HT-SHA-256-NONE) and Bind 2: one round trip
  for the authentication, no PBKDF2 anywhere.

Each worker logs in once with SCRAM first (and, for ``fast``, asks for a token then), outside
the measured phase; then reconnects back to back. The client caches SCRAM's salted password
(as real clients do), so ``legacy``/``sasl2`` measure the protocol, not client-side PBKDF2.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import itertools
import time
import uuid
from typing import Any

from scramp import ScramClient

from bench.scenarios.common import meter, user_names, verdict
from bench.stats import latency_summary
from bench.xmpp import ClientConfig, Connection, El, XmppError

NS_SASL2 = "urn:xmpp:sasl:2"
NS_BIND2 = "urn:xmpp:bind:0"
NS_FAST = "urn:xmpp:fast:0"
FAST_MECH = "HT-SHA-256-NONE"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _sasl2(conn: Connection, mechanism: str, initial: bytes, extra: str) -> El:
    conn.send(f"<authenticate xmlns='{NS_SASL2}' mechanism='{mechanism}'>"
              f"<initial-response>{_b64(initial)}</initial-response>{extra}</authenticate>")
    return await conn.next()


async def sasl2_scram(conn: Connection, ua: str, request_token: bool) -> El:
    """SASL2 SCRAM with Bind 2; returns <success/>."""
    client = ScramClient([conn.cfg.mechanism], conn.username, conn.cfg.password)
    token = f"<request-token xmlns='{NS_FAST}' mechanism='{FAST_MECH}'/>" if request_token else ""
    el = await _sasl2(conn, conn.cfg.mechanism, client.get_client_first().encode(),
                      f"<user-agent id='{ua}'/><bind xmlns='{NS_BIND2}'/>{token}")
    if el.name != "challenge":
        raise XmppError(f"SASL2: {el.name}")
    client.set_server_first(base64.b64decode(el.text).decode())
    conn.send(f"<response xmlns='{NS_SASL2}'>"
              f"{_b64(client.get_client_final().encode())}</response>")
    el = await conn.next()
    if el.name != "success":
        raise XmppError(f"SASL2: {el.name}")
    return el


async def sasl2_fast(conn: Connection, ua: str, token: str) -> El:
    proof = hmac.digest(token.encode(), b"Initiator", "sha256")
    el = await _sasl2(conn, FAST_MECH, conn.username.encode() + b"\0" + proof,
                      f"<user-agent id='{ua}'/><fast xmlns='{NS_FAST}'/>"
                      f"<bind xmlns='{NS_BIND2}'/>")
    if el.name != "success":
        raise XmppError(f"FAST: {el.name}")
    return el


async def login_once(conn: Connection, auth: str, ua: str, token: str) -> str:
    """One reconnection; returns the token to use next (FAST rotates them)."""
    features = await conn.connect()
    if auth == "legacy":
        features = await conn.authenticate(features)
        await conn.bind(features)
        return token
    if features.find("authentication") is None:
        raise XmppError("no SASL2 offered")
    success = await (sasl2_fast(conn, ua, token) if auth == "fast" else
                     sasl2_scram(conn, ua, False))
    await conn.next()  # the stream features that follow <success/>
    new = success.find("token")
    return new.get("token") if new is not None else token


async def reconnect(args: argparse.Namespace, cfg: ClientConfig) -> dict[str, Any]:
    users = user_names(args, args.concurrency)
    counter = itertools.count()
    latencies: list[float] = []
    failures: list[str] = []
    m = meter(args)

    async def setup(user: str) -> tuple[str, str]:
        ua = str(uuid.uuid4())
        conn = Connection(cfg, user)
        try:
            await conn.connect()
            success = await sasl2_scram(conn, ua, request_token=args.auth == "fast")
            tok = success.find("token")
            return ua, tok.get("token") if tok is not None else ""
        finally:
            conn.close()

    creds = await asyncio.gather(*(setup(u) for u in users))
    t0 = time.perf_counter()
    t_measure = t0 + args.warmup
    t_end = t_measure + args.duration

    async def worker(i: int) -> None:
        ua, token = creds[i]
        while time.perf_counter() < t_end:
            next(counter)
            conn = Connection(cfg, users[i])
            start = time.perf_counter()
            try:
                token = await login_once(conn, args.auth, ua, token)
            except Exception as exc:
                failures.append(f"{conn.bare}: {exc}")
                conn.close()
                continue
            done = time.perf_counter()
            conn.close()
            if t_measure <= done <= t_end:
                latencies.append(done - start)

    async def measure() -> dict[str, Any]:
        await asyncio.sleep(max(0.0, t_measure - time.perf_counter()))
        m.start()
        await asyncio.sleep(max(0.0, t_end - time.perf_counter()))
        return m.stop()

    measured, *_ = await asyncio.gather(measure(), *(worker(i) for i in range(len(users))))
    await asyncio.sleep(0.2)
    cpu = measured.get("server_cpu_s")
    result: dict[str, Any] = {
        "auth": args.auth, "concurrency": args.concurrency, "duration_s": args.duration,
        "reconnects": len(latencies),
        "reconnects_per_s": round(len(latencies) / args.duration, 1),
        **latency_summary(latencies),
        "server_cpu_us_per_reconnect": (round(cpu / len(latencies) * 1e6)
                                        if cpu and latencies else None),
        "failed": len(failures), "lost": len(failures), "duplicated": 0, "meter": measured,
    }
    problems = [f"first failure: {failures[0]}"] if failures else []
    if not latencies:
        problems.append("no reconnection completed")
    return verdict(result, problems)
