"""Counters around a load run, for the capacity model (docs/CAPACITY.md).

    python -m bench.counters snap before.json --redis-port 6379 --pg-db xmppd --pid 123 --pid 456
    python -m bench.loadgen pairs ...            # or any load
    sleep 11                                     # PostgreSQL publishes an idle backend's counts
    python -m bench.counters snap after.json ... # within 10 s (PGSTAT_IDLE_INTERVAL)
    python -m bench.counters diff before.json after.json

What it reads: Redis ``INFO all`` (calls per command, ``redis.call`` inside scripts counted as
their own commands; memory; network bytes; Redis CPU), PostgreSQL ``pg_stat_database`` and
``pg_stat_user_tables`` of one database (commits, read-only transactions ending in rollback,
rows inserted/updated/deleted per table), the WAL position (server-wide: other databases'
writes count too), the CPU time of every ``postgres`` process, and the CPU time and VmRSS of
the given xmppd processes. Redis and PostgreSQL counters are server-wide: use a Redis of
your own and a database nobody else writes to.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def _redis(port: int) -> dict[str, Any]:
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "all"], capture_output=True,
                         text=True, check=True).stdout
    cmds: dict[str, list[float]] = {}
    other: dict[str, float] = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[8:].split(":", 1)
            kv = dict(x.split("=", 1) for x in rest.split(","))
            cmds[name] = [int(kv["calls"]), float(kv["usec"])]
        elif ":" in line:
            key, value = line.split(":", 1)
            if key in ("used_memory", "total_net_input_bytes", "total_net_output_bytes",
                       "total_commands_processed", "used_cpu_sys", "used_cpu_user"):
                other[key] = float(value)
    return {"cmds": cmds, **other}


def _psql(db: str, query: str) -> list[list[str]]:
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-At", "-F",
                          "|", "-c", query], capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.strip().splitlines()]


def _pg(db: str) -> dict[str, Any]:
    keys = ["xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted"]
    row = _psql(db, f"select {', '.join(keys)} from pg_stat_database where datname = '{db}'")[0]
    tables = {r[0]: [int(x) for x in r[1:]] for r in _psql(
        db, "select relname, n_tup_ins, n_tup_upd, n_tup_del from pg_stat_user_tables")}
    wal = int(float(_psql(db, "select pg_current_wal_lsn() - '0/0'")[0][0]))
    return {**dict(zip(keys, map(int, row), strict=True)), "tables": tables, "wal_bytes": wal}


def _cpu_of(stat: str) -> float:
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def _postgres_cpu() -> float:
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if stat[stat.index("(") + 1:stat.rindex(")")].startswith("postgres"):
            total += _cpu_of(stat)
    return total


def _process(pid: int) -> dict[str, float]:
    with open(f"/proc/{pid}/stat") as f:
        cpu = _cpu_of(f.read())
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return {"cpu_s": cpu, "rss_kib": rss}


def snap(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"time": time.time(),
                           "processes": {str(p): _process(p) for p in args.pid}}
    if args.redis_port:
        out["redis"] = _redis(args.redis_port)
    if args.pg_db:
        out["pg"] = _pg(args.pg_db)
        out["postgres_cpu_s"] = _postgres_cpu()
    return out


def diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"wall_s": round(b["time"] - a["time"], 1)}
    if "redis" in a and "redis" in b:
        ra, rb = a["redis"], b["redis"]
        calls = {k: int(v[0] - ra["cmds"].get(k, [0, 0])[0]) for k, v in rb["cmds"].items()}
        out["redis_calls"] = {k: v for k, v in calls.items() if v}
        for key in ("used_memory", "total_net_input_bytes", "total_net_output_bytes",
                    "total_commands_processed"):
            out[f"redis_{key}"] = int(rb[key] - ra[key])
        out["redis_cpu_s"] = round(rb["used_cpu_sys"] + rb["used_cpu_user"]
                                   - ra["used_cpu_sys"] - ra["used_cpu_user"], 2)
    if "pg" in a and "pg" in b:
        pa, pb = a["pg"], b["pg"]
        out["pg"] = {k: pb[k] - pa[k] for k in pb if k != "tables"}
        was = pa["tables"]
        out["pg_tables"] = {k: [x - y for x, y in zip(v, was.get(k, [0, 0, 0]), strict=True)]
                            for k, v in pb["tables"].items() if v != was.get(k)}
        out["postgres_cpu_s"] = round(b["postgres_cpu_s"] - a["postgres_cpu_s"], 2)
    out["processes"] = {p: {"cpu_s": round(v["cpu_s"] - a["processes"][p]["cpu_s"], 2),
                            "rss_kib": v["rss_kib"] - a["processes"][p]["rss_kib"]}
                        for p, v in b["processes"].items() if p in a["processes"]}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.counters", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("snap", help="write the counters to a JSON file")
    s.add_argument("file")
    s.add_argument("--redis-port", type=int, default=0)
    s.add_argument("--pg-db", default="", help="PostgreSQL database (127.0.0.1, user postgres)")
    s.add_argument("--pid", type=int, action="append", default=[], help="an xmppd process")
    d = sub.add_parser("diff", help="print what changed between two snapshots as JSON")
    d.add_argument("before")
    d.add_argument("after")
    args = p.parse_args(argv)
    if args.cmd == "snap":
        with open(args.file, "w") as f:
            json.dump(snap(args), f)
    else:
        with open(args.before) as f, open(args.after) as g:
            print(json.dumps(diff(json.load(f), json.load(g))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
