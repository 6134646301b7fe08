"""Side by side: xmppd, Prosody and ejabberd under the same load, on the same core.

``python -m bench.compare`` (from the repo root, as root for Prosody/ejabberd) creates the
accounts, then for each repetition and scenario starts each server fresh (pinned to CPU 0),
runs ``bench.loadgen`` against it (pinned to CPU 1), stops it, and finally writes a Markdown
table of medians with min-max and the ratios xmppd/Prosody and xmppd/ejabberd. Servers are
interleaved (A B C A B C ...) so that slow drifts of the machine hit all of them alike, and a
run is flagged when the generator's core was saturated (its figure is then a floor for the
server, not a measurement) or when other processes used the server's core.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.servers import KINDS, ROOT, Options, Server, ServerError, Setup

DOMAIN = "bench.local"
PASSWORD = "bench"
USERS = 6100          # u0..u6099: scenarios use disjoint ranges where it matters
MAM_OWNER = 6000      # u6000 owns the archive, u6001.. fill it
# moved on if taken
PORTS = {"xmppd": 24522, "prosody": 24622, "ejabberd": 24722, "xmppd-cluster": 24822}
GEN_SATURATED = 0.90  # generator CPU / wall above this: the generator was the limit
CONTENDED = 0.10      # others' CPU on the server core / wall above this: disturbed


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool


THROUGHPUT = (Metric("p50_ms", "p50 ms", False), Metric("p99_ms", "p99 ms", False))


@dataclass(frozen=True)
class Scenario:
    name: str
    argv: tuple[str, ...]
    metrics: tuple[Metric, ...]
    opts: Options = field(default_factory=Options)
    timeout: float = 900.0


def scenarios(quick: bool, mam_queries: int) -> list[Scenario]:
    d = ("--duration", "3", "--warmup", "1") if quick else ("--duration", "10", "--warmup", "2")
    rss = (Metric("rss_per_conn_kib", "KiB/conn", False),)
    idle = [(1000, "1k"), (5000, "5k")] if not quick else [(200, "200")]
    out: list[Scenario] = []
    for n, tag in idle:
        out.append(Scenario(f"idle-{tag}-tls", ("idle", "--connections", str(n)), rss))
        out.append(Scenario(f"idle-{tag}-tcp", ("idle", "--connections", str(n), "--no-tls"),
                            rss, Options(tls_required=False)))
    out.append(Scenario("login", ("login", "--users", "200", "--concurrency", "20", *d),
                        (Metric("logins_per_s", "logins/s", True), *THROUGHPUT)))
    # A phone's reconnection (issue 17): new TCP + STARTTLS + authentication + bind, with
    # RFC 6120 SASL (SCRAM), SASL2 + Bind 2 (SCRAM) or a FAST token; a server without SASL2
    # shows as unsupported on the last two.
    for auth in ("legacy", "sasl2", "fast"):
        out.append(Scenario(f"reconnect-{auth}", ("reconnect", "--auth", auth,
                                                  "--concurrency", "20", *d),
                            (Metric("reconnects_per_s", "reconnects/s", True), *THROUGHPUT)))
    for k in ((50,) if quick else (50, 500)):
        out.append(Scenario(f"pairs-{k}", ("pairs", "--pairs", str(k), *d),
                            (Metric("msgs_per_s", "msgs/s", True), *THROUGHPUT)))
    # As deployed (issue 18): every message archived (each server's own archive store), and
    # one pipelined stream each way (a bot, a bridge, a federation link), 200 in flight.
    chat = (Metric("msgs_per_s", "msgs/s", True), *THROUGHPUT)
    out.append(Scenario("pairs-50-mam", ("pairs", "--pairs", "50", *d), chat,
                        Options(mam=True)))
    out.append(Scenario("stream-1", ("pairs", "--pairs", "1", "--window", "200", *d), chat))
    out.append(Scenario("stream-1-mam", ("pairs", "--pairs", "1", "--window", "200", *d),
                        chat, Options(mam=True)))
    for n in ((50,) if quick else (50, 200)):
        out.append(Scenario(f"muc-{n}", ("muc", "--occupants", str(n), *d),
                            (Metric("stanzas_per_s", "stanzas/s", True), *THROUGHPUT)))
    msgs = "1000" if quick else "5000"
    out.append(Scenario("offline", ("offline", "--messages", msgs, "--senders", "10",
                                    "--recipients", "100", "--recipients-offset", "5000"),
                        (Metric("store_per_s", "stored/s", True),
                         Metric("drain_per_s", "drained/s", True))))
    out.append(Scenario("mam", ("mam", "--user-offset", str(MAM_OWNER), "--queries",
                                str(mam_queries)),
                        THROUGHPUT, Options(mam=True)))
    return out


# -- contention and saturation --------------------------------------------------------------
def flags(result: dict[str, Any]) -> list[str]:
    m = result.get("meter") or {}
    wall = m.get("wall_s") or 0.0
    out = []
    if wall > 0 and m.get("gen_cpu_s", 0.0) / wall > GEN_SATURATED:
        out.append("gen-saturated")
    if wall > 0 and m.get("other_on_server_core_s", 0.0) / wall > CONTENDED:
        out.append("contended")
    return out


# -- running --------------------------------------------------------------------------------
class Driver:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(args.workdir or tempfile.mkdtemp(prefix="xmppd-bench-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        certs = self.workdir / "certs"
        cert, key = certs / f"{DOMAIN}.crt", certs / f"{DOMAIN}.key"
        if not cert.exists():
            from xmppd.tls import generate_self_signed

            generate_self_signed(DOMAIN, cert, key)
        self.setup = Setup(self.workdir, DOMAIN, cert, key, cpu=args.server_cpu,
                           xmppd_storage=args.xmppd_storage,
                           cluster_storage=args.xmppd_cluster_storage,
                           redis_url=args.redis_url,
                           stream_management=getattr(args, "sm", False))
        self.servers: dict[str, Server] = {}
        self.skipped: dict[str, str] = {}
        for name in args.servers.split(","):
            srv = KINDS[name](self.setup, PORTS[name])
            why = srv.available()
            if why:
                self.skipped[name] = f"not installed ({why})"
                log(f"skipping {name}: {why}")
            else:
                self.servers[name] = srv
        # This invocation's runs only: a reused work directory keeps its accounts and
        # archives, not the runs of earlier invocations (they were copied into every later
        # table's .jsonl).
        self.raw = self.workdir / "runs.jsonl"
        self.raw.write_text("")
        self.unsupported: dict[tuple[str, str], str] = {}
        self.populated: dict[str, dict[str, Any]] = {}

    def loadgen(self, srv: Server, argv: list[str], timeout: float,
                pids: list[int] | None = None) -> dict[str, Any]:
        cmd = ["taskset", "-c", self.args.gen_cpu, sys.executable, "-m", "bench.loadgen",
               *argv, "--port", str(srv.port), "--domain", DOMAIN, "--password", PASSWORD,
               "--server-cpu", self.args.server_cpu]
        if getattr(self.args, "sm", False) and argv and argv[0] not in ("create-users", "mam"):
            cmd.append("--sm")
        if pids:
            cmd += ["--server-pid", ",".join(map(str, pids))]
        errlog = srv.dir / "loadgen.stderr"
        with open(errlog, "ab") as err:
            try:
                p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err,
                                   timeout=timeout)
            except subprocess.TimeoutExpired:
                return {"complete": False, "failure": f"loadgen timed out after {timeout}s"}
        lines = [x for x in p.stdout.decode(errors="replace").splitlines() if x.startswith("{")]
        if not lines:
            return {"complete": False, "failure": f"loadgen exit {p.returncode}, no JSON "
                    f"(see {errlog})"}
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def prepare(self) -> None:
        """Accounts (and the MAM archive) once per server; data persists across runs."""
        for name, srv in self.servers.items():
            marker = srv.dir / "users.done"
            if not marker.exists():
                log(f"{name}: creating {USERS} accounts")
                argv = ["create-users", "--count", str(USERS)]
                if srv.user_kind == "xmppd":
                    r = self.loadgen(srv, [*argv, "--kind", "xmppd", "--storage-url",
                                           srv.storage_url()], 600)
                else:
                    srv.start(Options(tls_required=False))
                    try:
                        r = self.loadgen(srv, [*argv, "--kind", "ibr", "--no-tls",
                                               "--concurrency", "20"], 1800)
                    finally:
                        srv.stop()
                if not r.get("complete"):
                    raise SystemExit(f"{name}: could not create accounts: {r}")
                log(f"{name}: accounts ready in {r.get('seconds')}s")
                marker.write_text(json.dumps(r))
            if any(s.name == "mam" for s in self.plan) and self.args.mam_archive > 0:
                self.populate(name, srv)

    def populate(self, name: str, srv: Server) -> None:
        marker = srv.dir / "mam.done"
        if marker.exists():
            self.populated[name] = json.loads(marker.read_text())
            return
        log(f"{name}: filling the archive with {self.args.mam_archive} messages")
        srv.start(Options(mam=True))
        try:
            r = self.loadgen(srv, ["mam", "--user-offset", str(MAM_OWNER), "--populate",
                                   str(self.args.mam_archive), "--queries", "1"],
                             24 * 3600.0, srv.pids)
        finally:
            srv.stop()
        self.populated[name] = r
        if not r.get("complete"):
            self.unsupported[("mam", name)] = str(r.get("failure"))
            log(f"{name}: MAM unavailable: {r.get('failure')}")
            return
        log(f"{name}: archive filled at {r.get('populate_per_s')} msgs/s")
        db = srv.archive_db()
        if self.args.mam_total > self.args.mam_archive and db is not None:
            log(f"{name}: cloning archive rows up to {self.args.mam_total}")
            p = subprocess.run(
                [sys.executable, "-m", "bench.mam_fill", "--kind", name, "--db", db,
                 "--owner", f"u{MAM_OWNER}", "--total", str(self.args.mam_total)],
                cwd=ROOT, capture_output=True, text=True, timeout=3600)
            fill = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {}
            if not fill.get("complete"):
                raise SystemExit(f"{name}: mam_fill failed: {p.stdout} {p.stderr[-2000:]}")
            r["cloned_to"] = fill["archive"]
            r["clone_s"] = fill["seconds"]
        marker.write_text(json.dumps(r))

    def run(self) -> list[dict[str, Any]]:
        self.prepare()
        runs: list[dict[str, Any]] = []
        for rep in range(self.args.repeats):
            for sc in self.plan:
                for name, srv in self.servers.items():
                    if (sc.name, name) in self.unsupported:
                        continue
                    runs.append(self.one(sc, name, srv, rep))
        return runs

    def one(self, sc: Scenario, name: str, srv: Server, rep: int) -> dict[str, Any]:
        log(f"[{rep + 1}/{self.args.repeats}] {sc.name} on {name}")
        record: dict[str, Any] = {"scenario": sc.name, "server": name, "rep": rep}
        try:
            srv.start(sc.opts)
        except ServerError as exc:
            record["result"] = {"complete": False, "failure": f"server did not start: {exc}"}
            log(f"  server did not start: {exc}")
            return self.save(record)
        try:
            record["result"] = self.loadgen(srv, [*sc.argv, "--label", f"{sc.name}/{name}"],
                                            sc.timeout, srv.pids)
        finally:
            record["exit_code"] = srv.stop()
        res = record["result"]
        record["flags"] = flags(res)
        failure = res.get("failure")
        if failure and _unsupported(failure):
            self.unsupported[(sc.name, name)] = failure
        summary = ", ".join(f"{m.key}={res.get(m.key)}" for m in sc.metrics)
        log(f"  {'ok' if res.get('complete') else 'FAILED: ' + str(failure)} {summary} "
            f"{' '.join(record['flags'])}")
        return self.save(record)

    def save(self, record: dict[str, Any]) -> dict[str, Any]:
        with open(self.raw, "a") as f:
            f.write(json.dumps(record) + "\n")
        return record

    @property
    def plan(self) -> list[Scenario]:
        all_ = scenarios(self.args.quick, self.args.mam_queries)
        if not self.args.scenarios:
            return all_
        wanted = self.args.scenarios.split(",")
        return [s for s in all_ if any(s.name == w or s.name.startswith(w + "-")
                                       for w in wanted)]


def _unsupported(failure: str) -> bool:
    """Failures that mean "the server lacks the feature", not "the run went wrong"."""
    return any(x in failure for x in ("service-unavailable", "feature-not-implemented",
                                      "remote-server-not-found", "item-not-found",
                                      "cannot use"))


# -- the report -----------------------------------------------------------------------------
def _fmt(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{model}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"Python {platform.python_version()}, {ssl.OPENSSL_VERSION}")


def report(driver: Driver, runs: list[dict[str, Any]]) -> str:
    names = list(driver.servers)
    labels = {n: driver.servers[n].label for n in names}
    versions = ", ".join(f"{labels[n]} {driver.servers[n].version()}" for n in names)
    now = datetime.datetime.now().astimezone()
    lines = [
        f"Measured {now:%Y-%m-%d %H:%M %Z} on {machine()}.",
        f"Servers: {versions}. Server pinned to CPU {driver.args.server_cpu}, generator to CPU "
        f"{driver.args.gen_cpu}; {driver.args.repeats} interleaved runs each; median "
        "(min-max) of the complete runs.",
        "",
    ]
    peers = [n for n in names if n != "xmppd"]
    head = ["scenario", "metric", *(labels[n] for n in names)]
    if "xmppd" in names:
        head += [f"xmppd/{labels[p]}" for p in peers]
    head.append("flags")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sc in driver.plan:
        mine = [r for r in runs if r["scenario"] == sc.name]
        for i, metric in enumerate(sc.metrics):
            row = [sc.name if i == 0 else "", metric.label + (" ↑" if metric.higher_is_better
                                                               else " ↓")]
            medians: dict[str, float] = {}
            for n in names:
                ok = [r["result"][metric.key] for r in mine if r["server"] == n
                      and r["result"].get("complete") and r["result"].get(metric.key)
                      is not None]
                tried = [r for r in mine if r["server"] == n]
                if ok:
                    medians[n] = statistics.median(ok)
                    cell = f"{_fmt(medians[n])} ({_fmt(min(ok))}-{_fmt(max(ok))})"
                    if len(ok) < len(tried):
                        cell += f" [{len(ok)}/{len(tried)} ok]"
                elif (sc.name, n) in driver.unsupported:
                    cell = "n/a: " + _short(driver.unsupported[(sc.name, n)])
                elif n in driver.skipped:
                    cell = "not run"
                else:
                    fails = [str(r["result"].get("failure")) for r in tried]
                    cell = "failed: " + _short(fails[0]) if fails else "-"
                row.append(cell)
            if "xmppd" in names:
                for p in peers:
                    if "xmppd" in medians and medians.get(p):
                        row.append(f"{medians['xmppd'] / medians[p]:.2f}")
                    else:
                        row.append("-")
            if i == 0:
                fl = []
                for n in names:
                    tried = [r for r in mine if r["server"] == n]
                    for flag in ("gen-saturated", "contended"):
                        k = sum(1 for r in tried if flag in r.get("flags", ()))
                        if k:
                            fl.append(f"{labels[n]} {flag} {k}/{len(tried)}")
                row.append("; ".join(fl))
            else:
                row.append("")
            lines.append("| " + " | ".join(row) + " |")
    if driver.populated:
        lines.append("")
        lines.append("MAM archive, filled once per server through the protocol (not repeated) "
                     "and then grown with bench/mam_fill.py: "
                     + "; ".join(f"{labels[n]} {r.get('populated', 0):,} messages at "
                                 f"{r.get('populate_per_s')} msgs/s, then rows cloned to "
                                 f"{r.get('cloned_to', r.get('populated', 0)):,} in "
                                 f"{r.get('clone_s', 0)} s" if r.get("complete")
                                 else f"{labels[n]}: {_short(str(r.get('failure')))}"
                                 for n, r in driver.populated.items()))
    return "\n".join(lines) + "\n"


def _short(text: str, n: int = 60) -> str:
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    p.add_argument("--servers", default="xmppd,prosody,ejabberd")
    p.add_argument("--scenarios", default="",
                   help="comma list of names or prefixes (idle, login, reconnect, pairs, "
                        "stream, muc, offline, mam)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="small sizes and 3 s runs (smoke)")
    p.add_argument("--mam-archive", type=int, default=5000,
                   help="messages sent into the MAM owner's archive through the protocol")
    p.add_argument("--mam-total", type=int, default=1_000_000,
                   help="then grow it to this size with bench.mam_fill (server stopped)")
    p.add_argument("--mam-queries", type=int, default=200)
    p.add_argument("--workdir", help="reuse accounts and archives of an earlier run")
    p.add_argument("--output", help="Markdown file (default bench/results/compare-<date>.md)")
    p.add_argument("--server-cpu", default="0",
                   help='taskset list for the servers ("0,1": both cores, for clusters)')
    p.add_argument("--gen-cpu", default="1", help="taskset list for the generator")
    p.add_argument("--xmppd-cluster-storage", default="",
                   help="database URL for the xmppd-cluster server kind (PostgreSQL/MariaDB)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                   help="Redis of the xmppd-cluster server kind")
    p.add_argument("--sm", action="store_true",
                   help="clients enable XEP-0198 with resumption (answering the server's <r/>)")
    p.add_argument("--xmppd-storage", default="",
                   help="SQLAlchemy URL of an empty database for xmppd instead of its SQLite "
                        "file (e.g. postgresql+psycopg2://postgres@127.0.0.1/xmppd_bench)")
    args = p.parse_args(argv)
    if not shutil.which("taskset"):
        raise SystemExit("taskset (util-linux) is required")
    # SIGTERM (and SIGINT, even when inherited as ignored) unwind through the finally blocks
    # that stop the server under test.
    def _stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    driver = Driver(args)
    log(f"work directory {driver.workdir}")
    runs = driver.run()
    text = report(driver, runs)
    out = Path(args.output) if args.output else (
        ROOT / "bench" / "results" / f"compare-{datetime.date.today():%Y-%m-%d}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    shutil.copy(driver.raw, out.with_suffix(".jsonl"))
    print(text)
    log(f"table written to {out}; raw runs in {out.with_suffix('.jsonl')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
