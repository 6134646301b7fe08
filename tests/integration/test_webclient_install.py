"""The web client installs itself at the first start (plugins/webclient.py): the real
server, started the README's way, runs ``npm ci`` in the web folder when the client files
are missing and npm is on the PATH, and /chat/ serves the client once it is done. Without
npm, or when npm fails, the server runs as before and /chat/ says how to install it.

npm here is a stand-in script on the PATH (the real one would download Converse.js from the
registry); it records how it was run and writes what ``npm ci`` writes: the package's dist
folder under node_modules.
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.server import ROOT, ServerProcess

pytestmark = pytest.mark.integration

FAKE_NPM = """#!/bin/sh
printf '%s\\n' "$PWD" "$@" > "{record}"
{body}
"""
WORKS = """mkdir -p node_modules/converse.js/dist
echo 'window.converse = {};' > node_modules/converse.js/dist/converse.min.js
echo 'body {}' > node_modules/converse.js/dist/converse.min.css
"""
FAILS = """echo 'npm ERR! network request failed (fake)' >&2
exit 1
"""


def web_folder(tmp: Path) -> Path:
    web = tmp / "web"
    web.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy(ROOT / "web" / name, web / name)
    return web


def fake_npm(tmp: Path, body: str) -> tuple[Path, Path]:
    bin_dir, record = tmp / "bin", tmp / "npm-ran"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(FAKE_NPM.format(record=record, body=body))
    npm.chmod(0o755)
    return bin_dir, record


def get_chat(server: ServerProcess, path: str = "/chat/") -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(server.ca.ca_file))
    conn = http.client.HTTPSConnection("localhost", server.https_port, context=ctx, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def until_served(server: ServerProcess, timeout: float = 30.0) -> str:
    """Poll /chat/ until the install finished (a background process: no protocol event)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = get_chat(server)
        if status == 200:
            return body
        assert status == 503, (status, body)
        if time.monotonic() > deadline:
            raise TimeoutError(f"/chat/ still {status}: {body}\n{server.log()[-2000:]}")
        time.sleep(0.1)


@contextlib.contextmanager
def serve(tmp: Path, ca: CertAuthority, web: Path, path: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProcess]:
    monkeypatch.setenv("PATH", path)  # what the server process finds npm on
    yield from start_server(tmp / "srv", "sqlite", ca, config={
        "plugins": {"webclient": {"web_dir": str(web)}}})


@pytest.fixture
def web(tmp_path: Path) -> Path:
    return web_folder(tmp_path)


def test_first_start_installs_the_client_with_npm(tmp_path: Path, ca: CertAuthority,
                                                  web: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir, record = fake_npm(tmp_path, WORKS)
    with serve(tmp_path, ca, web, f"{bin_dir}:/usr/bin:/bin", monkeypatch) as server:
        body = until_served(server)
        assert "converse.initialize(" in body
        status, js = get_chat(server, "/chat/dist/converse.min.js")
        assert status == 200 and "window.converse" in js
        ran = record.read_text().splitlines()
        assert ran[0] == str(web) and ran[1:] == ["ci", "--no-audit", "--no-fund",
                                                  "--loglevel=error"]
        log = server.log()
        assert "installing the web client:" in log and "web client installed in" in log
        # the next start finds the files and runs nothing
        record.unlink()
        server.restart()
        assert get_chat(server)[0] == 200
        assert not record.exists()


def test_without_npm_the_server_runs_and_chat_explains(tmp_path: Path, ca: CertAuthority,
                                                       web: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    with serve(tmp_path, ca, web, str(empty), monkeypatch) as server:
        status, body = get_chat(server)
        assert status == 503 and "npm ci --prefix web" in body
        assert "npm is not on the PATH" in server.log()
        jid, _ = server.new_user("w")

        async def login() -> None:
            c = await connect(server, jid + "/x")
            await c.close()

        run(login())


def test_a_failing_npm_is_logged_and_nothing_else(tmp_path: Path, ca: CertAuthority,
                                                  web: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir, record = fake_npm(tmp_path, FAILS)
    with serve(tmp_path, ca, web, f"{bin_dir}:/usr/bin:/bin", monkeypatch) as server:
        deadline = time.monotonic() + 30
        while "installing the web client failed" not in server.log():
            assert time.monotonic() < deadline, server.log()[-2000:]
            time.sleep(0.1)
        assert "network request failed (fake)" in server.log()
        status, body = get_chat(server)
        assert status == 503 and "npm ci --prefix web" in body
        assert record.exists()
