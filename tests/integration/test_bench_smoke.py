"""The benchmark generator against the real server: a few seconds of `login` and `pairs`.

Only completeness is asserted (every login succeeds, every message arrives exactly once and
in order); speed is never asserted here, it is what bench/compare.py is for.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bench.stats import SeqTracker, percentile
from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.server import ROOT, ServerProcess

pytestmark = pytest.mark.integration

PASSWORD = "bench-smoke"
PREFIX = "smoke"


@pytest.fixture(scope="module")
def bench_server(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp("bench"), "sqlite", ca,
                            config={"plugins": {"enabled": ["disco", "ping"],
                                                "ping": {"interval": 3600.0}}})


def loadgen(server: ServerProcess, *argv: str) -> dict[str, Any]:
    """Run the generator as a user would and return its one JSON line (options given in
    ``argv`` after the scenario name override the defaults here)."""
    cmd = [sys.executable, "-m", "bench.loadgen", argv[0], "--port", str(server.c2s_port),
           "--domain", "localhost", "--users-prefix", PREFIX, "--password", PASSWORD,
           "--ca-file", str(server.ca.ca_file), *argv[1:]]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    lines = [x for x in p.stdout.splitlines() if x.strip()]
    assert len(lines) == 1, f"expected one JSON line, got {p.stdout!r}\n{p.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(lines[0])
    assert p.returncode == (0 if result.get("complete") else 1)
    return result


@pytest.fixture(scope="module")
def accounts(bench_server: ServerProcess) -> int:
    r = loadgen(bench_server, "create-users", "--kind", "xmppd", "--count", "4",
                "--storage-url", bench_server.storage_url)
    assert r["complete"] and r["count"] == 4, r
    return 4


def assert_complete(r: dict[str, Any], *fields: str) -> None:
    assert r["complete"] is True, r.get("failure", r)
    assert r["lost"] == 0 and r["duplicated"] == 0, r
    assert "failure" not in r
    for f in (*fields, "meter", "started"):
        assert r.get(f) is not None, f"{f} missing in {r}"


def test_login_scenario_is_complete(bench_server: ServerProcess, accounts: int) -> None:
    r = loadgen(bench_server, "login", "--users", str(accounts), "--concurrency", "4",
                "--duration", "1.5", "--warmup", "0.5")
    assert_complete(r, "logins", "logins_per_s", "p50_ms", "p99_ms", "tls")
    assert r["logins"] > 0 and r["failed"] == 0
    assert r["tls"].startswith("TLS")


def test_pairs_scenario_is_complete(bench_server: ServerProcess, accounts: int) -> None:
    r = loadgen(bench_server, "pairs", "--pairs", "2", "--window", "4", "--duration", "1.5",
                "--warmup", "0.5", "--mechanism", "SCRAM-SHA-256")
    assert_complete(r, "sent", "received", "msgs_per_s", "p50_ms", "p99_ms")
    assert r["sent"] == r["received"] > 0
    assert r["reordered"] == 0 and r["errors"] == 0


def test_missing_server_is_reported_as_incomplete(bench_server: ServerProcess) -> None:
    """A run that cannot even log in says so in its JSON instead of looking fast."""
    r = loadgen(bench_server, "pairs", "--pairs", "1", "--duration", "0.5", "--warmup", "0",
                "--users-prefix", "nobody-")
    assert r["complete"] is False and "failure" in r


def test_seq_tracker_counts_loss_duplicates_and_reordering() -> None:
    t = SeqTracker()
    assert [t.add(s) for s in (0, 1, 3, 2, 3)] == [True, True, True, True, False]
    assert (t.received, t.dups, t.reordered) == (4, 1, 1)
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
