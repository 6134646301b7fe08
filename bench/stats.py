"""Counting and measuring: exactly-once trackers, percentiles, CPU and memory meters.

The meter reads the server's CPU time and the busy time of the server's core from /proc, so
the driver can tell a clean run from one where another process shared the core, and the
generator's own CPU time, so it can tell when the generator rather than the server was the
limit.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


class SeqTracker:
    """Sequence numbers seen on one (sender -> receiver) stream: detects loss, duplicates and
    reordering with one byte per message."""

    __slots__ = ("dups", "last", "received", "reordered", "seen")

    def __init__(self) -> None:
        self.seen = bytearray()
        self.received = 0
        self.dups = 0
        self.reordered = 0
        self.last = -1

    def add(self, seq: int) -> bool:
        """Record ``seq``; False if it was seen before (a duplicate)."""
        seen = self.seen
        if seq >= len(seen):
            seen.extend(bytes(seq + 1024 - len(seen)))
        if seen[seq]:
            self.dups += 1
            return False
        seen[seq] = 1
        self.received += 1
        if seq < self.last:
            self.reordered += 1
        else:
            self.last = seq
        return True


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of unsorted values; None if empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def latency_summary(seconds: list[float], prefix: str = "") -> dict[str, float | None]:
    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000.0, 3)

    return {f"{prefix}p50_ms": ms(percentile(seconds, 50)),
            f"{prefix}p99_ms": ms(percentile(seconds, 99)),
            f"{prefix}max_ms": ms(max(seconds) if seconds else None)}


def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of every thread of ``pid`` (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def core_busy_seconds(cpu: int) -> float:
    """Non-idle time of one core from /proc/stat (everything but idle and iowait)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                # user nice system idle iowait irq softirq steal (guest is inside user)
                return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK
    raise ValueError(f"no cpu{cpu} in /proc/stat")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ValueError(f"no VmRSS for {pid}")


@dataclass
class Meter:
    """CPU accounting over one measured phase (``start()`` .. ``stop()``)."""

    server_pids: tuple[int, ...] = ()  # summed: the nodes of a cluster
    server_cpus: tuple[int, ...] = ()  # the cores they are pinned to, summed
    samples: dict[str, float] = field(default_factory=dict)

    def _read(self) -> dict[str, float]:
        r = {"wall": time.perf_counter(), "gen": time.process_time()}
        if self.server_pids:
            try:
                r["server"] = sum(proc_cpu_seconds(p) for p in self.server_pids)
            except OSError:
                pass
        if self.server_cpus:
            r["core"] = sum(core_busy_seconds(c) for c in self.server_cpus)
        return r

    def start(self) -> None:
        self.samples = self._read()

    def stop(self) -> dict[str, Any]:
        end = self._read()
        d = {k: end[k] - self.samples[k] for k in end if k in self.samples}
        out: dict[str, Any] = {"wall_s": round(d["wall"], 3), "gen_cpu_s": round(d["gen"], 3)}
        if "server" in d:
            out["server_cpu_s"] = round(d["server"], 3)
        if "core" in d:
            out["server_core_busy_s"] = round(d["core"], 3)
        if "server" in d and "core" in d:
            out["other_on_server_core_s"] = round(max(0.0, d["core"] - d["server"]), 3)
        return out
