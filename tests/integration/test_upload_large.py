"""A 100 MB upload and download through the real server, byte-identical, while the server's
memory stays far below the file size: the body is never held in memory on the way in
(twisted buffers it in a temporary file, the plugin copies it in chunks) nor on the way out
(a pull producer reads the file chunk by chunk). A memory bound, not a speed test."""

from __future__ import annotations

import hashlib
import http.client
import random
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import start_server
from tests.integration.test_upload import Slot, request_slot, stored_file, tls, upload_config
from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

MB = 1024 * 1024
SIZE = 100 * MB
BOUND = 40 * MB  # allowed growth of the server's resident and peak memory


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp("upload-large"), "sqlite", ca,
                            config=upload_config(max_file_size=2 * SIZE, quota=0,
                                                 daily_quota=0))


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in bytes, from /proc/<pid>/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak(pid: int) -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM to the current VmRSS (proc(5))."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def chunks(seed: int, size: int, chunk: int = MB) -> Iterator[bytes]:
    """Deterministic pseudo-random content, generated as it is sent (not held in memory)."""
    rng = random.Random(seed)
    left = size
    while left:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


def digest(data: Iterator[bytes]) -> str:
    h = hashlib.sha256()
    for block in data:
        h.update(block)
    return h.hexdigest()


def transfer(srv: ServerProcess, slot: Slot, seed: int, size: int) -> str:
    """PUT ``size`` bytes, GET them back streaming; returns the downloaded SHA-256."""
    url = urlsplit(slot.put)
    conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=tls(srv),
                                       timeout=300)
    conn.request("PUT", f"{url.path}?{url.query}", body=chunks(seed, size),
                 headers={"Content-Length": str(size),
                          "Content-Type": "application/octet-stream"})
    r = conn.getresponse()
    assert r.status == 201, r.read()
    r.read()
    conn.request("GET", urlsplit(slot.get).path)
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Length") == str(size)
    h = hashlib.sha256()
    received = 0
    while block := r.read(MB):
        h.update(block)
        received += len(block)
    conn.close()
    assert received == size
    return h.hexdigest()


def test_100_mb_round_trip_in_bounded_memory(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("big")

    async def slots() -> tuple[Slot, Slot]:
        c = await connect(srv, jid + "/big")
        warm = await request_slot(c, "warm-up.bin", 2 * MB, "application/octet-stream")
        big = await request_slot(c, "big.bin", SIZE, "application/octet-stream")
        await c.close()
        return warm, big

    warm, big = run(slots())
    assert srv.proc is not None
    pid = srv.proc.pid
    # A small transfer first, so that TLS, the thread pool and the code paths are warm and
    # what is measured is what the big file adds.
    assert transfer(srv, warm, 1, 2 * MB) == digest(chunks(1, 2 * MB))
    peak_reset = reset_peak(pid)
    before = memory(pid)
    got = transfer(srv, big, 2, SIZE)
    after = memory(pid)
    assert got == digest(chunks(2, SIZE))
    assert stored_file(srv, big).stat().st_size == SIZE
    rss_growth = after["VmRSS"] - before["VmRSS"]
    peak_growth = after["VmHWM"] - (before["VmRSS"] if peak_reset else before["VmHWM"])
    print(f"\nserver memory for a {SIZE // MB} MB round trip: VmRSS {before['VmRSS'] // MB} -> "
          f"{after['VmRSS'] // MB} MB, peak {after['VmHWM'] // MB} MB "
          f"(growth {rss_growth / MB:.1f} MB resident, {peak_growth / MB:.1f} MB peak)")
    assert rss_growth < BOUND, (before, after)
    assert peak_growth < BOUND, (before, after)
