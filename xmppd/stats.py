"""The counters the hot paths bump: plain integers and lists, read only at scrape time.

prometheus_client's ``Counter.inc()`` takes a lock (0.3-1 us), and a chat message crosses
four counting points (received, routed, sent, and storage when it is archived or queued),
so the paths themselves only add to ints here, tens of nanoseconds each, on the reactor
thread (no lock needed: everything that writes or reads these runs there).
``xmppd/metrics.py`` turns them into Prometheus metric families when Prometheus asks.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from typing import Final

# Upper bounds (seconds) of the histogram buckets; Prometheus adds +Inf.
ROUTE_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                        0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STORAGE_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                          1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# One routed stanza in ROUTE_SAMPLE is timed (two clock reads and a bisect, ~0.25 us, would
# be ~1 % of a local chat message's CPU if paid by every stanza). A power of two: the test
# is a bitwise and.
ROUTE_SAMPLE: Final = 16

AUTH_RESULTS: Final = ("success", "failure", "banned", "aborted")
STORAGE_OPERATIONS: Final = ("read", "write", "lookup")


class Histogram:
    """Observations counted into fixed buckets by a bisect into a plain list."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (Prometheus 'le').
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, observations <= le) for every bucket, +Inf last, as exposition wants them."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class Stats:
    """Everything counted while serving; one per server (and so per cluster node)."""

    def __init__(self) -> None:
        # Stanzas by name (message, presence, iq) as they cross the server's edge: received
        # from a client or a peer server, written to a client or a peer server.
        self.c2s_in: defaultdict[str, int] = defaultdict(int)
        self.c2s_out: defaultdict[str, int] = defaultdict(int)
        self.s2s_in: defaultdict[str, int] = defaultdict(int)
        self.s2s_out: defaultdict[str, int] = defaultdict(int)
        self.auth: dict[str, int] = dict.fromkeys(AUTH_RESULTS, 0)
        self.routed = 0  # Router.route calls (each stanza once, bounces included)
        self.route_latency = Histogram(ROUTE_BUCKETS)  # one in ROUTE_SAMPLE of them
        self.storage = {op: Histogram(STORAGE_BUCKETS) for op in STORAGE_OPERATIONS}
        self.reactor_lag = Histogram(LAG_BUCKETS)

    def storage_done(self, operation: str, seconds: float) -> None:
        """storage.sql.Database's timing callback (on the reactor thread)."""
        self.storage[operation].observe(seconds)
