"""A real Prometheus (the Debian package) scrapes a running xmppd every second; the test
drives traffic and reads the series back through Prometheus's HTTP API, then evaluates
every query of the Grafana dashboard (contrib/grafana/xmppd.json) there.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.raw import NS_SASL, RawStream, q
from tests.support.server import ServerProcess
from tests.unit.test_grafana import dashboard, queries

pytestmark = pytest.mark.integration
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
TOKEN = "prometheus-test-token"


def _require() -> None:
    if not os.path.exists(PROMETHEUS):
        msg = "the Prometheus test needs prometheus (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


class Prometheus:
    """One Prometheus process on a port of its own choosing (it reports it in its log)."""

    def __init__(self, tmp: Path, target: str) -> None:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "scrape_configs": [{
                "job_name": "xmppd", "metrics_path": "/metrics",
                "authorization": {"type": "Bearer", "credentials": TOKEN},
                "static_configs": [{"targets": [target]}]}],
        }
        (tmp / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log_path = tmp / "prometheus.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp / 'tsdb'}", "--web.listen-address=127.0.0.1:0"],
                stdout=log, stderr=subprocess.STDOUT)
        self.url = ""
        deadline = time.monotonic() + 30
        while not self.url:
            found = re.search(r'msg="Listening on" address=(127\.0\.0\.1:\d+)', self.log())
            if found:
                self.url = f"http://{found.group(1)}"
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus did not start:\n{self.log()}")
            else:
                time.sleep(0.1)
        # "Listening on" comes before the TSDB is open; until then the API answers 503 with
        # a plain-text body. /-/ready says when queries work.
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus did not become ready:\n{self.log()}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # a bad query: 400 with the error in JSON
            body = json.loads(exc.read())
        assert body["status"] == "success", (params, body)
        return body["data"]

    def value(self, expr: str) -> float | None:
        result = self.api("query", query=expr)["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, at_least: float, timeout: float = 30.0) -> float:
        """Poll until ``expr`` is at least ``at_least`` (Prometheus scrapes every second)."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.value(expr)
            if v is not None and v >= at_least:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr} = {v}, expected at least {at_least}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    _require()
    yield from start_server(tmp_path_factory.mktemp("prom-xmppd"), "sqlite", ca, config={
        "listeners": [{"type": "c2s", "port": 0, "address": "127.0.0.1"},
                      {"type": "c2s_tls", "port": 0, "address": "127.0.0.1"},
                      {"type": "https", "port": 0, "address": "127.0.0.1"},
                      {"type": "http", "port": 0, "address": "127.0.0.1"}],
        "metrics": {"token": TOKEN, "offline_cache": 0.0},
    })


@pytest.fixture(scope="module")
def prom(srv: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    p = Prometheus(tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{srv.ports['http'][0]}")
    try:
        yield p
    finally:
        p.stop()


def test_prometheus_scrapes_what_the_server_did(srv: ServerProcess, prom: Prometheus) -> None:
    prom.wait_for('up{job="xmppd"}', 1)
    # A counter starts at 0, so after its first scrape each of these has a value.
    series = {
        "success": 'xmppd_authentications_total{result="success"}',
        "failure": 'xmppd_authentications_total{result="failure"}',
        "in": 'xmppd_stanzas_received_total{stream="c2s",kind="message"}',
        "out": 'xmppd_stanzas_sent_total{stream="c2s",kind="message"}',
        "archived": "xmppd_archive_writes_total",
    }
    base = {k: prom.wait_for(expr, 0) for k, expr in series.items()}
    alice, _ = srv.new_user("alice")
    bob, _ = srv.new_user("bob")
    carol, _ = srv.new_user("carol")
    messages = 5

    async def body() -> None:
        ca = await connect(srv, alice + "/a")
        cb = await connect(srv, bob + "/b")
        for i in range(messages):
            ca.send_message(mto=bob, mbody=f"m{i}", mtype="chat")
        for i in range(messages):
            assert (await cb.next_message())["body"] == f"m{i}"
        ca.send_message(mto=carol, mbody="later", mtype="chat")
        assert await ca.plugin["xep_0199"].ping("localhost", timeout=10) is not None
        raw = await RawStream.open(srv.c2s_port)
        await raw.open_stream()
        await raw.starttls(str(srv.ca.ca_file))
        await raw.open_stream()
        assert (await raw.auth_plain("alice", "wrong")).tag == q(NS_SASL, "failure")
        raw.close()
        # While both clients are still connected, Prometheus must see them.
        wait = asyncio.to_thread
        await wait(prom.wait_for, 'xmppd_connections{kind="c2s"}', 2)
        await wait(prom.wait_for, "xmppd_sessions", 2)
        await ca.close()
        await cb.close()

    run(body(), timeout=120)
    prom.wait_for(series["success"], base["success"] + 2)
    prom.wait_for(series["failure"], base["failure"] + 1)
    prom.wait_for(series["in"], base["in"] + messages + 1)
    prom.wait_for(series["out"], base["out"] + messages)
    prom.wait_for(series["archived"], base["archived"] + 2 * messages + 1)
    prom.wait_for('xmppd_offline_messages{host="localhost"}', 1)
    prom.wait_for('xmppd_storage_latency_seconds_count{operation="write"}', 1)
    prom.wait_for("xmppd_reactor_lag_seconds_count", 1)
    prom.wait_for("process_resident_memory_bytes", 1)
    [target] = prom.api("targets")["activeTargets"]
    assert target["health"] == "up" and target["lastError"] == "", target


def test_every_dashboard_query_runs_in_prometheus(srv: ServerProcess, prom: Prometheus
                                                  ) -> None:
    prom.wait_for("count(xmppd_build_info)", 1)
    prom.wait_for('count_over_time(up{job="xmppd"}[1m])', 3)  # rates need a few scrapes
    for expr in queries(dashboard()):
        if expr.startswith("label_values("):  # a Grafana function: its series then
            expr = expr.removeprefix("label_values(").split(",")[0]
        promql = (expr.replace("$__rate_interval", "1m").replace("$instance", ".*"))
        result = prom.api("query", query=promql)["result"]
        if "xmppd_cluster_nodes" in promql or result:  # only a cluster node exports that
            continue
        # A rate over a window with no new samples (a loaded machine scrapes late) can be
        # empty; then every series it reads must at least exist in Prometheus.
        for name in set(re.findall(r"xmppd_[a-z0-9_]+", promql)):
            found = prom.api("query", query=f'count({{__name__=~"{name}"}})')["result"]
            assert found, f"{promql} returned nothing and {name} is not in Prometheus"
