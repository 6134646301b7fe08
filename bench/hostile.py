"""Hostile input, measured: what attackers cost everyone else (issue 15, A4 and A5).

``python -m bench.hostile`` starts xmppd (its default configuration: SQLite, STARTTLS
required, the auth defaults) pinned to one core, and from the other core measures:

* **slow tokens**: a logged-in bystander pings the server back to back, first alone, then
  while ``--attackers`` unauthenticated connections each send a stream header and then an
  unterminated token (``<message x='``, a comment, a start tag of endless attributes)
  in 1 KiB pieces, reconnecting whenever the server cuts them off. Figures: the
  bystander's round trip p50/p99/max in both phases, the server's peak RSS during the
  attack and its RSS after, what the attackers managed to send.
* **guessing**: ``--guessers`` parallel connections from one address guess the password
  of a planted account with SASL PLAIN (over TLS) for ``--guess-duration`` seconds;
  the planted password is the ``--planted``-th guess. Figures: guesses the server
  actually checked (answered not-authorized) per minute, refused ones
  (temporary-auth-failure), whether and when the password was found, against the bound
  the configuration sets (auth.ban_after per ban window).

``--root DIR`` runs the xmppd of another checkout (a git worktree of an older commit) for
before/after figures. Prints one JSON line; the README of bench/ keeps the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.servers import PYTHON, ROOT, Options, Setup, Xmppd
from bench.stats import percentile, rss_kib
from bench.xmpp import ClientConfig, Connection, XmppError

DOMAIN = "bench.local"
HEADER = (f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          f"xmlns:stream='http://etherx.jabber.org/streams' to='{DOMAIN}' "
          f"version='1.0'>").encode()
OPENINGS = (b"<message x='", b"<!--", b"<message ")
PIECE = 1024


class RootedXmppd(Xmppd):
    """xmppd from ``root`` (default: this checkout)."""

    def __init__(self, setup: Setup, port: int, root: Path) -> None:
        super().__init__(setup, port)
        self.root = root

    def command(self, opts: Options) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command(opts)
        return cmd, {**env, "PYTHONPATH": str(self.root)}


def ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 2)


async def pings(conn: Connection, seconds: float) -> list[float]:
    """Back-to-back ping round trips for ``seconds``."""
    out: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        await conn.ping(timeout=30)
        out.append(time.perf_counter() - t0)
    return out


def rtt_summary(rtts: list[float]) -> dict[str, Any]:
    return {"pings": len(rtts), "p50_ms": ms(percentile(rtts, 50)),
            "p99_ms": ms(percentile(rtts, 99)), "max_ms": ms(max(rtts) if rtts else None)}


async def attacker(port: int, opening: bytes, stop: asyncio.Event, stats: dict[str, int],
                   source: str) -> None:
    """Header, then an unterminated token in 1 KiB pieces; reconnect when cut off."""
    filler = (b"a='' " * (PIECE // 5)) if opening == b"<message " else b"a" * PIECE
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                           local_addr=(source, 0))
        except OSError:
            stats["refused_connects"] += 1
            await asyncio.sleep(0.05)
            continue
        stats["connections"] += 1
        try:
            writer.write(HEADER + opening)
            while not stop.is_set():
                writer.write(filler)
                await writer.drain()
                stats["bytes"] += len(filler)
                if reader.at_eof():
                    break
                await asyncio.sleep(0)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
        stats["cut_off"] += 1


def sample_rss(pid: int, samples: list[int], stop: asyncio.Event) -> asyncio.Task[None]:
    async def loop() -> None:
        while not stop.is_set():
            samples.append(rss_kib(pid) or 0)
            await asyncio.sleep(0.2)

    return asyncio.ensure_future(loop())


async def slow_tokens(srv: Xmppd, cfg: ClientConfig, args: argparse.Namespace
                      ) -> dict[str, Any]:
    bystander = Connection(cfg, "u0", "bystander")
    await bystander.login()
    await pings(bystander, 1.0)  # warm up
    quiet = await pings(bystander, args.phase)
    rss_before = rss_kib(srv.pid)
    stop = asyncio.Event()
    stats = {"connections": 0, "bytes": 0, "cut_off": 0, "refused_connects": 0}
    rss: list[int] = []
    sampler = sample_rss(srv.pid, rss, stop)
    attackers = [asyncio.ensure_future(attacker(srv.port, OPENINGS[i % len(OPENINGS)], stop,
                                                stats, f"127.0.2.{i + 1}"))
                 for i in range(args.attackers)]
    await asyncio.sleep(1.0)  # let the attack build up before measuring
    attacked = await pings(bystander, args.phase)
    stop.set()
    await asyncio.gather(*attackers, sampler, return_exceptions=True)
    await asyncio.sleep(2.0)
    bystander.close()
    return {
        "attackers": args.attackers, "openings": [o.decode() for o in OPENINGS],
        "quiet": rtt_summary(quiet), "attacked": rtt_summary(attacked),
        "attack": stats, "attack_mb_per_s": round(stats["bytes"] / args.phase / 1e6, 2),
        "rss_before_kib": rss_before, "rss_peak_kib": max(rss) if rss else None,
        "rss_after_kib": rss_kib(srv.pid),
    }


async def guessing(cfg: ClientConfig, args: argparse.Namespace) -> dict[str, Any]:
    """PLAIN guesses from one address; each guess a fresh TLS connection, as the attack in
    the report did (48 connections, 21 guesses/s against the old throttle)."""
    counter = iter(range(10 ** 9))
    outcome = {"checked": 0, "refused": 0, "errors": 0}
    found: list[float] = []
    t0 = time.perf_counter()
    end = t0 + args.guess_duration
    guess_cfg = replace(cfg, mechanism="PLAIN", source="127.0.3.1", timeout=60.0)

    async def worker() -> None:
        while time.perf_counter() < end and not found:
            n = next(counter)
            conn = Connection(replace(guess_cfg, password=f"guess-{n:06d}"), "victim0")
            try:
                features = await conn.connect()
                await conn.authenticate(features)
                found.append(time.perf_counter() - t0)
            except XmppError as exc:
                if "not-authorized" in str(exc):
                    outcome["checked"] += 1
                elif "temporary-auth-failure" in str(exc):
                    outcome["refused"] += 1
                else:
                    outcome["errors"] += 1
                    await asyncio.sleep(0.05)
            finally:
                conn.close()

    await asyncio.gather(*(worker() for _ in range(args.guessers)))
    minutes = (time.perf_counter() - t0) / 60
    return {"guessers": args.guessers, "seconds": round(minutes * 60, 1),
            "checked": outcome["checked"], "refused": outcome["refused"],
            "errors": outcome["errors"],
            "checked_per_min": round(outcome["checked"] / minutes, 1),
            "planted_at_guess": args.planted,
            "found_after_s": round(found[0], 2) if found else None,
            "bound": f"auth.ban_after={args.ban_after} failures per address, then refused "
                     f"for auth.ban_time={args.ban_time:.0f}s"}


def create_users(srv: Xmppd, root: Path, planted: int) -> None:
    """u0 (the bystander, password "bench") and victim0, whose password is a guess."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    base = [PYTHON, "-m", "bench.loadgen", "create-users", "--kind", "xmppd",
            "--storage-url", srv.storage_url(), "--domain", DOMAIN, "--count", "1"]
    subprocess.run([*base, "--users-prefix", "u", "--password", "bench"], check=True,
                   env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    subprocess.run([*base, "--users-prefix", "victim", "--password", f"guess-{planted:06d}"],
                   check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="xmppd-hostile-"))
    certs = workdir / "certs"
    cert, key = certs / f"{DOMAIN}.crt", certs / f"{DOMAIN}.key"
    from xmppd.tls import generate_self_signed

    generate_self_signed(DOMAIN, cert, key)
    srv = RootedXmppd(Setup(workdir, DOMAIN, cert, key, cpu=args.server_cpu), 25222, root)
    create_users(srv, srv.root, args.planted)
    srv.start(Options(tls_required=True))
    try:
        cfg = ClientConfig(port=srv.port, domain=DOMAIN, password="bench")
        result: dict[str, Any] = {"root": str(srv.root), "version": git_describe(srv.root)}
        result["slow_tokens"] = await slow_tokens(srv, cfg, args)
        result["guessing"] = await guessing(replace(cfg, timeout=60.0), args)
    finally:
        srv.stop()
    return result


def git_describe(root: Path) -> str:
    r = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(ROOT), help="the xmppd checkout to run")
    p.add_argument("--attackers", type=int, default=4)
    p.add_argument("--phase", type=float, default=20.0, help="seconds per ping phase")
    p.add_argument("--guessers", type=int, default=50)
    p.add_argument("--guess-duration", type=float, default=60.0)
    p.add_argument("--planted", type=int, default=150, help="which guess is right")
    p.add_argument("--ban-after", type=int, default=10, help="(for the report) the config")
    p.add_argument("--ban-time", type=float, default=600.0, help="(for the report)")
    p.add_argument("--server-cpu", default="0")
    p.add_argument("--gen-cpu", default="1")
    args = p.parse_args(argv)
    if args.gen_cpu:
        os.sched_setaffinity(0, {int(c) for c in args.gen_cpu.split(",")})
    result = asyncio.run(run(args, Path(args.root).resolve()))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
