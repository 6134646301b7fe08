"""HTTP File Upload limits against the real server: the per-user quota, the daily quota (both
XEP-0363 §5 resource-constraint with a retry stamp), and that all of it survives a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import start_server
from tests.integration.test_upload import (
    Slot,
    U,
    http_request,
    put,
    request_slot,
    slot_error,
    upload_config,
)
from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.server import ServerProcess
from xmppd.timeutil import parse_datetime

pytestmark = pytest.mark.integration

KB = 1000
LIFETIME = 3600.0  # seconds files live in this module's server
# Expiry of files and PUT URLs needs time to pass: tests/unit/test_upload_service.py runs
# the sweep on a Clock.


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(
        tmp_path_factory.mktemp("upload-limits"), "sqlite", ca, config=upload_config(
            max_file_size=KB, quota=2 * KB, daily_quota=3 * KB, expire_after=LIFETIME))


def retry_stamp(err: object) -> float | None:
    el = err.iq.xml.find(f"{{jabber:client}}error/{U}retry")  # type: ignore[attr-defined]
    if el is None:
        return None
    return parse_datetime(el.get("stamp", "")) / 1_000_000


def test_quota_with_a_retry_stamp(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("q")

    async def body() -> None:
        c = await connect(srv, jid + "/q")
        a = await request_slot(c, "a.bin", KB)
        b = await request_slot(c, "b.bin", KB)
        # slots count at once, before their upload: the third would exceed 2 kB kept
        err = await slot_error(c, "c.bin", 1)
        assert (err.condition, err.etype) == ("resource-constraint", "wait")
        assert "quota" in err.text.lower() and "2000" in err.text
        assert retry_stamp(err) is None  # nothing stored yet, so nothing will expire
        t0 = time.time()
        assert put(srv, a, b"a" * KB).status == 201
        assert put(srv, b, b"b" * KB).status == 201
        err = await slot_error(c, "c.bin", 10)
        assert err.condition == "resource-constraint"
        stamp = retry_stamp(err)  # §5: when the oldest upload expires
        assert stamp is not None and t0 - 2 <= stamp <= time.time() + LIFETIME + 2
        assert err.iq.xml.find(U + "request") is not None
        # freed by expiry, the kept quota but not the daily one: on a Clock in
        # tests/unit/test_upload_service.py (test_quotas_as_uploads_and_slots_expire)
        await c.close()

    run(body())


def test_records_and_key_survive_a_restart(ca: CertAuthority,
                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("upload-restart")
    config = upload_config(max_file_size=KB, quota=2 * KB, daily_quota=2 * KB)
    with contextmanager(start_server)(tmp, "sqlite", ca, config=config) as server:
        jid, _ = server.new_user("r")

        async def before() -> tuple[Slot, Slot]:
            c = await connect(server, jid + "/r")
            done = await request_slot(c, "kept.txt", KB, "text/plain")
            later = await request_slot(c, "later.txt", KB, "text/plain")
            await c.close()
            return done, later

        done, later = run(before())
        assert put(server, done, b"k" * KB, "text/plain").status == 201
        secret = (tmp / "data" / "upload.secret").read_text()
        server.restart()
        assert (tmp / "data" / "upload.secret").read_text() == secret
        # a PUT URL signed before the restart still works; the file is still served
        assert put(server, later, b"l" * KB, "text/plain").status == 201
        assert http_request(server, "GET", done.get).body == b"k" * KB

        async def after() -> None:
            c = await connect(server, jid + "/r")
            err = await slot_error(c, "more.txt", 1)  # the quota still counts both files
            assert err.condition == "resource-constraint"
            await c.close()

        run(after())
