"""Prometheus exposition: what xmppd/stats.py counted, and gauges read at scrape time.

The hot paths only bump plain integers (xmppd/stats.py); ``ServerCollector`` turns them
into metric families when Prometheus scrapes, together with what is cheaper to read than to
maintain (open connections, s2s streams, bans, cluster nodes) and the number of stored
offline messages, a count query run at most every ``metrics.offline_cache`` seconds.
Every metric this module can export is listed in ``FAMILIES`` (``describe()``), which the
Grafana dashboard test (contrib/grafana/xmppd.json) checks its expressions against.

The endpoint is for administrators only (``MetricsResource``): the client must be in
``metrics.allow_networks`` (loopback by default) and, when ``metrics.token`` is set, send it
as a bearer token (RFC 6750 §2.1); anything else gets 403 or 401 and no details.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from xmppd import __version__, netaddr
from xmppd import stanza as st
from xmppd.logs import Logger
from xmppd.stats import ROUTE_SAMPLE, Histogram

if TYPE_CHECKING:
    from xmppd.context import Clock
    from xmppd.server import XmppServer

log = Logger(namespace="xmppd.metrics")

LAG_INTERVAL: Final = 0.5  # seconds between reactor lag probes

# name (as exposed, without _total/_bucket...) -> (type, help, label names)
FAMILIES: Final[dict[str, tuple[str, str, tuple[str, ...]]]] = {
    "xmppd_build": ("info", "xmppd version", ("version",)),
    "xmppd_connections": ("gauge", "Open connections by kind: c2s (TCP), websocket "
                          "(RFC 7395), bosh (XEP-0206 sessions), s2s_in, s2s_out", ("kind",)),
    "xmppd_sessions": ("gauge", "Resources bound on this node", ()),
    "xmppd_authentications": ("counter", "Client SASL outcomes: success, failure, banned "
                              "(refused by the brute-force guard), aborted", ("result",)),
    "xmppd_auth_bans": ("gauge", "Authentication bans in force, by address or account",
                        ("kind",)),
    "xmppd_stanzas_received": ("counter", "Stanzas received from clients (c2s) and peer "
                               "servers (s2s), by stanza kind", ("stream", "kind")),
    "xmppd_stanzas_sent": ("counter", "Stanzas written to clients (c2s) and peer servers "
                           "(s2s), by stanza kind", ("stream", "kind")),
    "xmppd_stanzas_routed": ("counter", "Stanzas through the router (error replies included)",
                             ()),
    "xmppd_routing_latency_seconds": (
        "histogram", f"Time from routing a stanza until it was delivered, stored, handed on "
        f"or bounced; one stanza in {ROUTE_SAMPLE} is timed", ()),
    "xmppd_storage_latency_seconds": (
        "histogram", "Database calls from request to result, pool wait included, by "
        "operation (read, write, lookup)", ("operation",)),
    "xmppd_offline_messages": ("gauge", "Messages in offline queues, by host", ("host",)),
    "xmppd_offline_users": ("gauge", "Users with a non-empty offline queue, by host",
                            ("host",)),
    "xmppd_archive_writes": ("counter", "Stanzas written to message archives (XEP-0313)", ()),
    "xmppd_s2s_streams": ("gauge", "Server-to-server streams by direction (in, out) and "
                          "state (negotiating, established)", ("direction", "state")),
    "xmppd_s2s_queued_stanzas": ("gauge", "Stanzas waiting for a server-to-server stream", ()),
    "xmppd_reactor_lag_seconds": ("histogram", "How late a timer fired: the event loop was "
                                  "busy or blocked", ()),
    "xmppd_cluster_nodes": ("gauge", "Cluster nodes this node believes alive (itself "
                            "included); only when clustered", ()),
}


def _family(name: str) -> Any:
    kind, doc, labels = FAMILIES[name]
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=labels)
    if kind == "gauge":
        return GaugeMetricFamily(name, doc, labels=labels)
    if kind == "histogram":
        return HistogramMetricFamily(name, doc, labels=labels)
    return InfoMetricFamily(name, doc, labels=labels)


def _histogram(family: HistogramMetricFamily, labels: list[str], h: Histogram) -> None:
    family.add_metric(labels, h.cumulative(), h.total)


class ServerCollector(Collector):
    """Reads the server's state and counters at scrape time (on the reactor thread)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.server = metrics.server

    def describe(self) -> Iterable[Any]:
        return [_family(name) for name in FAMILIES]

    def collect(self) -> Iterator[Any]:
        server, stats = self.server, self.server.stats
        fam = _family("xmppd_build")
        fam.add_metric([], {"version": __version__})
        yield fam

        conns = Counter(c.transport_kind for c in server.connections)
        s2s = server.s2s
        fam = _family("xmppd_connections")
        for kind in ("c2s", "websocket", "bosh"):
            fam.add_metric([kind], conns.get(kind, 0))
        fam.add_metric(["s2s_in"], len(s2s.inbound) if s2s is not None else 0)
        fam.add_metric(["s2s_out"], len(s2s.outbound) if s2s is not None else 0)
        yield fam
        fam = _family("xmppd_sessions")
        fam.add_metric([], server.sessions.count())
        yield fam

        fam = _family("xmppd_authentications")
        for result, n in stats.auth.items():
            fam.add_metric([result], n)
        yield fam
        bans = Counter(b.kind for b in server.auth_guard.bans())
        fam = _family("xmppd_auth_bans")
        for kind in ("address", "account"):
            fam.add_metric([kind], bans.get(kind, 0))
        yield fam

        for name, pairs in (("xmppd_stanzas_received", (("c2s", stats.c2s_in),
                                                        ("s2s", stats.s2s_in))),
                            ("xmppd_stanzas_sent", (("c2s", stats.c2s_out),
                                                    ("s2s", stats.s2s_out)))):
            fam = _family(name)
            for stream, counts in pairs:
                for kind in sorted(set(st.STANZA_NAMES) | set(counts)):
                    fam.add_metric([stream, kind], counts.get(kind, 0))
            yield fam
        fam = _family("xmppd_stanzas_routed")
        fam.add_metric([], stats.routed)
        yield fam
        fam = _family("xmppd_routing_latency_seconds")
        _histogram(fam, [], stats.route_latency)
        yield fam
        fam = _family("xmppd_storage_latency_seconds")
        for op, h in stats.storage.items():
            _histogram(fam, [op], h)
        yield fam

        offline = self.metrics.offline
        if offline is not None:
            messages, users = _family("xmppd_offline_messages"), _family("xmppd_offline_users")
            for host in sorted(set(server.hosts) | set(offline)):
                m, u = offline.get(host, (0, 0))
                messages.add_metric([host], m)
                users.add_metric([host], u)
            yield messages
            yield users
        fam = _family("xmppd_archive_writes")
        fam.add_metric([], server.storage.archive.writes)
        yield fam

        yield from self._s2s()
        fam = _family("xmppd_reactor_lag_seconds")
        _histogram(fam, [], stats.reactor_lag)
        yield fam
        if server.cluster is not None:
            fam = _family("xmppd_cluster_nodes")
            fam.add_metric([], len(server.cluster.alive))
            yield fam

    def _s2s(self) -> Iterator[Any]:
        s2s = self.server.s2s
        streams = _family("xmppd_s2s_streams")
        queued = _family("xmppd_s2s_queued_stanzas")
        counts: Counter[tuple[str, str]] = Counter()
        waiting = 0
        if s2s is not None:
            for s in s2s.inbound:
                counts["in", "established" if s.authenticated else "negotiating"] += 1
            for o in s2s.outbound:
                counts["out", "established" if o.authorized else "negotiating"] += 1
            waiting = sum(len(r.queue) for r in s2s.routes.values())
        for direction in ("in", "out"):
            for state in ("negotiating", "established"):
                streams.add_metric([direction, state], counts[direction, state])
        queued.add_metric([], waiting)
        yield streams
        yield queued


class ReactorLag:
    """Reactor lag: how late a timer fires. A chain of ``callLater`` rather than a
    LoopingCall, which realigns each call to multiples of its start time (so its lateness
    would have to be rebuilt from its scheduling rule); here each probe knows when it was
    due. Lag is time the reactor spent on other work (or blocked) past that moment, which
    every connection waited too."""

    def __init__(self, clock: Clock, histogram: Histogram, interval: float = LAG_INTERVAL
                 ) -> None:
        self.clock = clock
        self.histogram = histogram
        self.interval = interval
        self._due = 0.0
        self._call: IDelayedCall | None = None

    def start(self, delay: float = 0.0) -> None:
        """The first probe is due at once (the series has a sample from the first reactor
        turn on, not only after an interval), the next ones every ``interval``."""
        self._due = self.clock.seconds() + delay
        self._call = self.clock.callLater(delay, self._fired)

    def _fired(self) -> None:
        self.histogram.observe(max(0.0, self.clock.seconds() - self._due))
        self.start(self.interval)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class Metrics:
    """The server's Prometheus registry, the offline count cache and the HTTP endpoint."""

    def __init__(self, server: XmppServer) -> None:
        self.server = server
        self.config = server.config.metrics
        self.registry = CollectorRegistry()
        self.registry.register(ServerCollector(self))
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, fds
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.lag = ReactorLag(server.clock, server.stats.reactor_lag)
        self.offline: dict[str, tuple[int, int]] | None = None
        self._offline_at = float("-inf")
        self._refreshing: defer.Deferred[None] | None = None
        self._allow = netaddr.networks(self.config.allow_networks)
        self._proxies = netaddr.networks(server.config.web.trusted_proxies)

    def start(self) -> None:
        path = self.config.path.strip("/")
        if path in self.server.web.paths():
            raise ValueError(f"metrics.path: /{path} is already served by a plugin")
        self.server.web.mount(path, MetricsResource(self))
        self.lag.start()

    def stop(self) -> None:
        self.lag.stop()

    # -- scrape ------------------------------------------------------------------------------
    def refresh(self) -> defer.Deferred[None]:
        """Fetch the offline queue totals if the cached ones are older than allowed; one
        query at a time however many scrapes wait for it. Never fails: a failed query is
        logged and the previous figures (or none) are exposed."""
        if self.server.clock.seconds() - self._offline_at < self.config.offline_cache:
            return defer.succeed(None)
        pending = self._refreshing
        if pending is None:
            pending = self._fetch()
            if pending.called:  # storage answered at once (not started: tests, CLI)
                return defer.succeed(None)
            self._refreshing = pending
        waiter: defer.Deferred[None] = defer.Deferred()
        pending.addBoth(lambda _: waiter.callback(None))
        return waiter

    def _fetch(self) -> defer.Deferred[None]:
        def got(totals: dict[str, tuple[int, int]]) -> None:
            self.offline = totals
            self._offline_at = self.server.clock.seconds()

        def failed(failure: Any) -> None:
            log.failure("could not count offline messages", failure)

        def done(_: object) -> None:
            self._refreshing = None

        d: defer.Deferred[Any] = self.server.storage.offline.totals()
        d.addCallbacks(got, failed)
        d.addBoth(done)
        return d

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The registry in the format the scraper asked for (OpenMetrics or text 0.0.4)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    # -- access ------------------------------------------------------------------------------
    def client_address(self, request: Request) -> str:
        """The address to check: the peer's, or behind our trusted reverse proxies the last
        X-Forwarded-For hop they did not add themselves."""
        peer = str(getattr(request.getClientAddress(), "host", ""))
        return netaddr.client_address(peer, request.getHeader("x-forwarded-for"),
                                      self._proxies)

    def refusal(self, request: Request) -> tuple[int, str, dict[str, str]] | None:
        """(status, body, headers) for a request that may not see the metrics."""
        if not netaddr.within(self.client_address(request), self._allow):
            return 403, "forbidden\n", {}
        token = self.config.token
        if not token:
            return None
        header = request.getHeader("authorization") or ""
        scheme, _, credentials = header.strip().partition(" ")
        challenge = 'Bearer realm="xmppd"'
        if scheme.lower() != "bearer":
            # RFC 6750 §3.1: no error code when the request had no authentication.
            return 401, "unauthorized\n", {"www-authenticate": challenge}
        if not hmac.compare_digest(credentials.strip().encode(), token.encode()):
            return 401, "unauthorized\n", {
                "www-authenticate": challenge + ', error="invalid_token"'}
        return None


class MetricsResource(Resource):
    isLeaf = True  # noqa: N815 (twisted.web API)

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render(self, request: Request) -> Any:
        request.setHeader(b"cache-control", b"no-store")
        refused = self.metrics.refusal(request)
        if refused is not None:
            status, body, headers = refused
            return _plain(request, status, body, headers)
        if request.method not in (b"GET", b"HEAD"):
            return _plain(request, 405, "method not allowed\n", {"allow": "GET, HEAD"})
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def answer(_: object) -> None:
            if gone:
                return  # the scraper hung up meanwhile
            accept = request.getHeader("accept") or ""
            body, content_type = self.metrics.exposition(accept)
            request.setHeader(b"content-type", content_type.encode())
            request.setHeader(b"content-length", str(len(body)).encode())
            request.write(body)
            request.finish()

        d = self.metrics.refresh()
        d.addCallback(answer)
        d.addErrback(lambda f: _failed(request, f, gone))
        return NOT_DONE_YET


def _plain(request: Request, status: int, body: str, headers: dict[str, str]) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    for k, v in headers.items():
        request.setHeader(k.encode(), v.encode())
    return body.encode()


def _failed(request: Request, failure: Any, gone: list[bool]) -> None:
    log.failure("metrics exposition failed", failure)
    if not gone:
        request.setResponseCode(500)
        request.write(b"internal error\n")
        request.finish()


