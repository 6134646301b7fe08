"""Metrics: the collector's values after known events, in process, and who may read them."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from tests.support.inproc import FakeSession, add_user, make_server
from xmppd import stanza as st
from xmppd.c2s import C2SSession
from xmppd.config import ConfigError, from_dict
from xmppd.metrics import FAMILIES, Metrics, MetricsResource, ReactorLag, ServerCollector
from xmppd.server import XmppServer
from xmppd.stats import ROUTE_SAMPLE, Histogram

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by (name, sorted labels)."""
    metrics.refresh()
    body, _ = metrics.exposition("")
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


def msg(to: str, body: str = "hi") -> st.Element:
    m = st.make("message", attrs={"to": to, "type": "chat", "id": "m1"})
    st.add(m, "body", text_=body)
    return m


@pytest.fixture
def server() -> XmppServer:
    s = make_server(plugins=["disco", "offline", "mam"])
    for u in ("alice", "bob", "carol"):
        add_user(s, f"{u}@localhost")
    return s


def test_histogram_buckets_are_prometheus_le() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(v)
    assert h.cumulative() == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert h.count == 5 and h.total == pytest.approx(8.65)


def test_routing_offline_archive_and_storage_after_known_traffic(server: XmppServer) -> None:
    metrics = server.metrics
    assert metrics is not None
    before = scrape(metrics)
    assert value(before, "xmppd_offline_messages", host="localhost") == 0
    assert value(before, "xmppd_stanzas_routed_total") == 0
    a = FakeSession(server, "alice@localhost/a")  # each routes its initial presence
    b = FakeSession(server, "bob@localhost/b")
    for _ in range(2 * ROUTE_SAMPLE):
        a.stanza(msg("bob@localhost/b"))
    assert len(b.take()) == 2 * ROUTE_SAMPLE
    a.stanza(msg("carol@localhost"))  # offline: stored
    a.stanza(msg("carol@localhost", "again"))
    server.clock.advance(server.config.metrics.offline_cache + 1)  # the cached count expires
    after = scrape(metrics)
    assert value(after, "xmppd_stanzas_routed_total") == 2 + 2 * ROUTE_SAMPLE + 2
    # One stanza in ROUTE_SAMPLE is timed.
    assert value(after, "xmppd_routing_latency_seconds_count") == 2
    assert value(after, "xmppd_offline_messages", host="localhost") == 2
    assert value(after, "xmppd_offline_users", host="localhost") == 1
    # MAM archives every chat message for the sender and for the recipient.
    archived = value(after, "xmppd_archive_writes_total") - value(
        before, "xmppd_archive_writes_total")
    assert archived == 2 * (2 * ROUTE_SAMPLE + 2)
    for op in ("read", "write"):
        assert value(after, "xmppd_storage_latency_seconds_count", operation=op) > value(
            before, "xmppd_storage_latency_seconds_count", operation=op)
    assert value(after, "xmppd_sessions") == 2


def test_offline_count_is_cached_for_the_configured_time(server: XmppServer) -> None:
    metrics = server.metrics
    assert metrics is not None
    scrape(metrics)
    FakeSession(server, "alice@localhost/a").stanza(msg("carol@localhost"))
    assert value(scrape(metrics), "xmppd_offline_messages", host="localhost") == 0  # cached
    server.clock.advance(server.config.metrics.offline_cache + 0.1)
    assert value(scrape(metrics), "xmppd_offline_messages", host="localhost") == 1


def c2s(server: XmppServer, peer: str = "10.1.2.3") -> tuple[C2SSession, StringTransport]:
    """A client stream over a StringTransport, its header sent (as if TLS were up)."""
    session = C2SSession(server, direct_tls=True)
    transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
    session.makeConnection(transport)
    session.dataReceived(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                         b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' "
                         b"version='1.0'>")
    transport.clear()
    return session, transport


def test_sasl_outcomes_are_counted_by_result(server: XmppServer) -> None:
    session, transport = c2s(server)
    session.dataReceived(f"<auth xmlns='{SASL}' mechanism='X-NOPE'/>".encode())
    assert b"invalid-mechanism" in transport.value()
    session.dataReceived(f"<abort xmlns='{SASL}'/>".encode())
    assert b"<aborted" in transport.value()
    banned, banned_transport = c2s(server, "10.9.9.9")
    guard = server.auth_guard
    for i in range(server.config.auth.ban_after):
        attempt = guard.begin("10.9.9.9", f"x{i}@localhost")
        assert attempt is not None
        attempt.failed()
    banned.dataReceived(f"<auth xmlns='{SASL}' mechanism='PLAIN'>AGEAYg==</auth>".encode())
    assert b"temporary-auth-failure" in banned_transport.value()
    assert server.stats.auth == {"success": 0, "failure": 1, "banned": 1, "aborted": 1}
    assert server.metrics is not None
    samples = scrape(server.metrics)
    assert value(samples, "xmppd_authentications_total", result="banned") == 1
    assert value(samples, "xmppd_auth_bans", kind="address") == 1


def test_client_stanzas_in_and_out_and_connections(server: XmppServer) -> None:
    session, _ = c2s(server)
    session.username = "alice"  # as if SASL had succeeded (PLAIN verifies in a thread)
    session.dataReceived(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'"
                         b"/></iq>")
    bob = FakeSession(server, "bob@localhost/b")
    session.dataReceived(b"<message to='bob@localhost/b' type='chat'><body>x</body></message>"
                         b"<presence/>")
    bob.stanza(msg("alice@localhost"))
    stats = server.stats
    assert dict(stats.c2s_in) == {"message": 1, "presence": 1}
    assert stats.c2s_out["iq"] == 1 and stats.c2s_out["message"] == 1
    assert server.metrics is not None
    samples = scrape(server.metrics)
    assert value(samples, "xmppd_stanzas_received_total", stream="c2s", kind="message") == 1
    assert value(samples, "xmppd_stanzas_received_total", stream="c2s", kind="iq") == 0
    assert value(samples, "xmppd_stanzas_sent_total", stream="c2s", kind="message") == 1
    assert value(samples, "xmppd_connections", kind="c2s") == 1
    assert value(samples, "xmppd_connections", kind="websocket") == 0


def test_reactor_lag_is_how_late_the_probe_fired() -> None:
    clock = Clock()
    h = Histogram((0.01, 0.1, 1.0))
    lag = ReactorLag(clock, h, interval=0.5)
    lag.start()
    clock.advance(0)  # the first probe at once: a sample from the first turn on
    assert h.counts == [1, 0, 0, 0]
    clock.advance(0.5)  # on time
    clock.advance(0.8)  # due at 1.0, fired at 1.3: the reactor was busy for 0.3 s
    assert h.counts == [2, 0, 1, 0] and h.total == pytest.approx(0.3)
    lag.stop()
    assert not clock.getDelayedCalls()


def test_every_exported_family_is_described() -> None:
    """FAMILIES (what the dashboard test checks against) is exactly what collect() yields,
    except the cluster's node count, exported only when clustered."""
    server = make_server()
    assert server.metrics is not None
    server.metrics.refresh()  # the offline counts come from a query
    collector = ServerCollector(server.metrics)
    collected = {f.name for f in collector.collect()}
    assert collected <= set(FAMILIES)
    assert set(FAMILIES) - collected == {"xmppd_cluster_nodes"}
    assert {f.name for f in collector.describe()} == set(FAMILIES)


# -- who may read them ---------------------------------------------------------------------
def metrics_server(**metrics: Any) -> XmppServer:
    cfg = from_dict({"hosts": {"localhost": {}}, "storage": {"url": "sqlite://"},
                     "metrics": metrics})
    server = XmppServer(cfg, Clock())
    server.db.migrate()
    return server


def get(server: XmppServer, client: str, headers: dict[str, str] | None = None,
        method: bytes = b"GET") -> DummyRequest:
    assert server.metrics is not None
    request = DummyRequest([b""])
    request.method = method
    request.client = (IPv6Address("TCP", client, 1) if ":" in client
                      else IPv4Address("TCP", client, 1))
    for k, v in (headers or {}).items():
        request.requestHeaders.setRawHeaders(k, [v])
    result = MetricsResource(server.metrics).render(request)
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()
    assert request.finished
    return request


def body(request: DummyRequest) -> str:
    return b"".join(request.written).decode()


def test_loopback_only_by_default() -> None:
    server = metrics_server()
    for client in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        ok = get(server, client)
        assert ok.responseCode in (None, 200) and "xmppd_connections" in body(ok)
    denied = get(server, "192.0.2.7")
    assert denied.responseCode == 403 and body(denied) == "forbidden\n"


def test_networks_and_token_are_both_required() -> None:
    server = metrics_server(allow_networks=["192.0.2.0/24"], token="s3cret")
    good = {"Authorization": "Bearer s3cret"}
    assert get(server, "127.0.0.1", good).responseCode == 403  # loopback not listed now
    missing = get(server, "192.0.2.7")
    assert missing.responseCode == 401 and body(missing) == "unauthorized\n"
    assert missing.responseHeaders.getRawHeaders("www-authenticate") == ['Bearer realm="xmppd"']
    wrong = get(server, "192.0.2.7", {"Authorization": "Bearer s3cre"})
    assert wrong.responseCode == 401 and "xmppd_" not in body(wrong)
    assert wrong.responseHeaders.getRawHeaders("www-authenticate") == [
        'Bearer realm="xmppd", error="invalid_token"']
    assert get(server, "192.0.2.7", {"Authorization": "Basic czNjcmV0"}).responseCode == 401
    ok = get(server, "192.0.2.7", {"Authorization": "bearer s3cret"})  # scheme: any case
    assert ok.responseCode in (None, 200) and "xmppd_sessions" in body(ok)
    assert get(server, "192.0.2.7", good, method=b"POST").responseCode == 405
    assert get(server, "198.51.100.1", good, method=b"POST").responseCode == 403


def test_forwarded_clients_of_a_trusted_proxy_are_checked_not_the_proxy() -> None:
    server = metrics_server()  # web.trusted_proxies: loopback
    assert get(server, "127.0.0.1", {"X-Forwarded-For": "203.0.113.5"}).responseCode == 403
    # What the client wrote comes first; the hop the proxy appended is the one that counts.
    spoofed = {"X-Forwarded-For": "127.0.0.1, 203.0.113.5"}
    assert get(server, "127.0.0.1", spoofed).responseCode == 403
    local = get(server, "127.0.0.1", {"X-Forwarded-For": "127.0.0.1"})
    assert local.responseCode in (None, 200)
    # Only a trusted proxy's header is read.
    assert get(server, "192.0.2.1", {"X-Forwarded-For": "127.0.0.1"}).responseCode == 403


@pytest.mark.parametrize("raw,message", [
    ({"path": "a/b"}, "metrics.path: one path segment"),
    ({"path": "/"}, "metrics.path: one path segment"),
    ({"allow_networks": ["localhost"]}, "metrics.allow_networks: 'localhost' is not"),
    ({"offline_cache": -1}, "metrics.offline_cache: must not be negative"),
    ({"tokens": "x"}, "metrics.tokens: unknown key"),
])
def test_config_errors_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        from_dict({"metrics": raw})
    assert str(exc.value).startswith(message), str(exc.value)


def test_disabled_means_no_endpoint() -> None:
    server = metrics_server(enabled=False)
    assert server.metrics is None
