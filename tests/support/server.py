"""Run the real xmppd process on free ports with a temporary config, as a user would."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.ca import CertAuthority

ROOT = Path(__file__).resolve().parents[2]


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Enough TOML writing for test configs (tables, arrays of tables, scalars)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    arrays: list[tuple[str, list[dict[str, Any]]]] = []
    for k, v in data.items():
        key = json.dumps(k) if not k.replace("_", "").isalnum() else k
        if isinstance(v, dict):
            tables.append((key, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            arrays.append((key, v))
        else:
            lines.append(f"{key} = {toml_value(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, v in tables:
        name = f"{prefix}.{key}" if prefix else key
        out += f"\n[{name}]\n" + to_toml(v, name)
    for key, items in arrays:
        name = f"{prefix}.{key}" if prefix else key
        for item in items:
            out += f"\n[[{name}]]\n" + to_toml(item, name)
    return out


class ServerProcess:
    """One xmppd process. ``start()`` waits until its ports are reported."""

    def __init__(self, tmp: Path, storage_url: str, ca: CertAuthority,
                 domains: tuple[str, ...] = ("localhost",),
                 config: dict[str, Any] | None = None) -> None:
        self.tmp = tmp
        self.storage_url = storage_url
        self.ca = ca
        self.domains = domains
        self.extra = config or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, list[int]] = {}
        self.log_path = tmp / "server.log"
        self.config_path = tmp / "xmppd.toml"
        self.ports_path = tmp / "ports.json"
        self.passwords: dict[str, str] = {}
        self._write_config()

    def _write_config(self) -> None:
        certs = self.tmp / "certs"
        hosts: dict[str, Any] = {}
        for d in self.domains:
            crt, key = self.ca.issue(d, certs)
            hosts[d] = {"cert": str(crt), "key": str(key)}
        cfg: dict[str, Any] = {
            "data_dir": str(self.tmp / "data"),
            "storage": {"url": self.storage_url},
            "log": {"level": "debug" if os.environ.get("XMPPD_TEST_DEBUG") else "info"},
            "listeners": [
                {"type": "c2s", "port": 0, "address": "127.0.0.1"},
                {"type": "c2s_tls", "port": 0, "address": "127.0.0.1"},
                {"type": "https", "port": 0, "address": "127.0.0.1"},
            ],
            # Test servers never run `npm ci` in the checkout's web/ (dozens of them at once
            # would race in one folder); tests/integration/test_webclient_install.py turns it
            # on for a folder of its own.
            "plugins": {"webclient": {"install": False}},
        }
        if os.environ.get("XMPPD_TEST_REACTOR"):
            cfg["reactor"] = os.environ["XMPPD_TEST_REACTOR"]  # tox -e stock
        for k, v in self.extra.items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k] = {**cfg[k], **v}
            else:
                cfg[k] = v
        for d, extra in cfg.get("hosts", {}).items():
            hosts[d] = {**hosts.get(d, {}), **extra}
        cfg["hosts"] = hosts
        self.config_path.write_text(to_toml(cfg))

    # -- process --------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.ports_path.unlink(missing_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xmppd", "run", "-c", str(self.config_path),
             "--ports-file", str(self.ports_path)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        deadline = time.monotonic() + timeout
        while not self.ports_path.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"xmppd exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"xmppd did not start within {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        self.ports = json.loads(self.ports_path.read_text())
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tracebacks(self) -> list[str]:
        """Unexpected errors the server logged (tests assert there are none)."""
        text = self.log()
        return [block for block in text.split("\n20") if "Traceback" in block
                or "Unhandled error" in block]

    @property
    def c2s_port(self) -> int:
        return self.ports["c2s"][0]

    @property
    def c2s_tls_port(self) -> int:
        return self.ports["c2s_tls"][0]

    @property
    def https_port(self) -> int:
        return self.ports["https"][0]

    # -- accounts ---------------------------------------------------------------------------------
    @property
    def control_socket(self) -> Path:
        return self.tmp / "data" / "control.sock"

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "xmppd", *args, "-c", str(self.config_path)],
            cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60)

    def add_user(self, jid: str, password: str | None = None) -> str:
        """Create an account directly in storage (what `xmppd adduser` does, minus a process)."""
        from twisted.internet.defer import Deferred

        from storage.facade import Storage
        from storage.sql import Database
        from xmppd.accounts import derive, split_user

        password = password or secrets.token_urlsafe(9)
        host, user = split_user(jid)
        db = Database(self.storage_url, 1)
        db.migrate()
        try:
            d: Deferred[bool] = Storage(db).accounts.create(host, user, derive(password, 4096))
            results: list[Any] = []
            d.addBoth(results.append)
            if results[0] is not True:
                raise RuntimeError(f"could not create {jid}: {results[0]}")
        finally:
            db.stop()
        self.passwords[f"{user}@{host}"] = password
        return password

    def new_user(self, prefix: str = "u", domain: str = "localhost") -> tuple[str, str]:
        jid = f"{prefix}{secrets.token_hex(4)}@{domain}"
        return jid, self.add_user(jid)
