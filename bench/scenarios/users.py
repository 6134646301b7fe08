"""``create-users``: the accounts every scenario expects, made the fastest robust way.

* ``--kind xmppd`` writes them with xmppd's own storage layer (what ``xmppd adduser`` does)
  while the server is stopped. PBKDF2 runs once: every bench account shares the password and
  therefore one salt and verifier, which is fine for a benchmark and makes 10k accounts take
  seconds instead of minutes.
* ``--kind ibr`` registers through the protocol (XEP-0077), which Prosody and ejabberd both
  allow in the configs compare.py generates; an existing account counts as done.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.scenarios.common import user_names
from bench.xmpp import ClientConfig, Connection


def create_xmppd(args: argparse.Namespace) -> dict[str, Any]:
    from twisted.internet.defer import Deferred

    from storage.facade import Storage
    from storage.sql import Database
    from xmppd.accounts import derive

    t0 = time.perf_counter()
    names = user_names(args, args.count)
    db = Database(args.storage_url, 1, sqlite_synchronous="OFF")
    db.migrate()
    created = 0
    try:
        store = Storage(db).accounts
        creds = derive(args.password, 4096)
        for name in names:
            d: Deferred[bool] = store.create(args.domain, name, creds)
            out: list[Any] = []
            d.addBoth(out.append)  # no reactor: the storage layer runs inline
            if out[0] is True:
                created += 1
            elif out[0] is not False:
                raise RuntimeError(f"could not create {name}: {out[0]}")
    finally:
        db.stop()
    return {"kind": "xmppd", "count": len(names), "created": created,
            "seconds": round(time.perf_counter() - t0, 2), "complete": True}


async def create_ibr(args: argparse.Namespace, cfg: ClientConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    names = user_names(args, args.count)
    queue = list(reversed(names))
    created = existed = 0
    failures: list[str] = []

    async def worker() -> None:
        nonlocal created, existed
        while queue:
            name = queue.pop()
            for attempt in range(3):
                conn = Connection(cfg, name)
                try:
                    await conn.connect()
                    if await conn.register():
                        created += 1
                    else:
                        existed += 1
                    break
                except Exception as exc:
                    if attempt == 2:
                        failures.append(f"{name}: {exc}")
                    await asyncio.sleep(0.5)
                finally:
                    conn.close()

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    result: dict[str, Any] = {
        "kind": "ibr", "count": len(names), "created": created, "existed": existed,
        "failed": len(failures), "seconds": round(time.perf_counter() - t0, 2),
        "complete": not failures}
    if failures:
        result["failure"] = failures[0]
    return result
