"""bench/compare.py's driver: a reused work directory keeps accounts and archives, but the
raw runs copied beside a table are that invocation's only."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.compare import Driver


def test_raw_runs_start_empty_in_a_reused_workdir(tmp_path: Path) -> None:
    (tmp_path / "runs.jsonl").write_text(json.dumps({"scenario": "login", "old": True}) + "\n")
    (tmp_path / "xmppd").mkdir()
    (tmp_path / "xmppd" / "users.done").write_text("")
    args = argparse.Namespace(workdir=str(tmp_path), servers="xmppd", server_cpu="0",
                              xmppd_storage="", xmppd_cluster_storage="",
                              redis_url="redis://127.0.0.1:6379/0")
    driver = Driver(args)
    assert driver.raw.read_text() == ""
    driver.save({"scenario": "login", "server": "xmppd"})
    assert [json.loads(x) for x in driver.raw.read_text().splitlines()] == [
        {"scenario": "login", "server": "xmppd"}]
    assert (tmp_path / "xmppd" / "users.done").exists()  # the accounts' marker is kept
