"""Start xmppd, Prosody and ejabberd from generated configs in a private directory each.

Every server gets the same domain and certificate, one STARTTLS client port below 32768 on
loopback (ports above collide with the generator's outgoing connections), its own data
directory, log and pid, no rate limits, in-band registration where the bench uses it to
create accounts, a MUC service at ``conference.<domain>``, offline storage, and MAM only when
asked (archiving every message would otherwise tax the chat figures of the servers that have
it). Each is pinned to one core with ``taskset`` and stopped with SIGTERM (SIGKILL after a
timeout), so a failed run never leaves a server behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


@dataclass(frozen=True)
class Setup:
    """What every server is configured with."""

    workdir: Path
    domain: str
    cert: Path
    key: Path
    cpu: str = "0"  # taskset list: "0", or "0,1" for a server on both cores
    xmppd_storage: str = ""  # a SQLAlchemy URL instead of xmppd's SQLite file
    cluster_storage: str = ""  # the database of the xmppd cluster (PostgreSQL or MariaDB)
    redis_url: str = "redis://127.0.0.1:6379/0"  # the xmppd cluster's Redis
    stream_management: bool = False  # clients use XEP-0198 (xmppd loads smacks for them)


@dataclass(frozen=True)
class Options:
    """Per-run switches: TLS required or optional, archive everything or nothing."""

    tls_required: bool = True
    mam: bool = False


class ServerError(RuntimeError):
    pass


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(preferred: int) -> int:
    """``preferred`` if nobody listens there, else the next free one below 32768 (above it
    the kernel hands out ports for outgoing connections). Checked before every start: another
    process on our port would otherwise answer the generator in our server's place."""
    candidates: list[int] = [preferred, *range(preferred + 100, 32768, 97)]
    for port in candidates:
        if port_free(port):
            return port
    raise ServerError(f"no free port below 32768 near {preferred}")


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"exited with {proc.returncode}:\n{tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise ServerError(f"port {port} not open after {timeout}s:\n{tail(log)}")


def tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _lua(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "{ " + ", ".join(_lua(x) for x in v) + " }"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_lua(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


class Server:
    """One server kind. ``start`` returns after the client port accepts connections."""

    name = ""
    label = ""
    start_timeout = 60.0
    user_kind = "ibr"  # how create-users makes accounts for it

    def __init__(self, setup: Setup, port: int) -> None:
        self.setup = setup
        self.port = port
        self.dir = setup.workdir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def available(self) -> str | None:
        """None if it can run here, else why not."""
        return None

    def version(self) -> str:
        return "?"

    def command(self, opts: Options) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def pids(self) -> list[int]:
        """Every process of the server (the meters sum them)."""
        return [self.pid]

    def start(self, opts: Options) -> int:
        port = free_port(self.port)
        if port != self.port:
            print(f"{self.name}: port {self.port} is taken, using {port}", file=sys.stderr)
            self.port = port
        self.proc = self.spawn(*self.command(opts))
        try:
            wait_port(self.port, self.start_timeout, self.proc, self.log)
            self.after_start()
        except BaseException:
            self.stop(timeout=5)
            raise
        return self.proc.pid

    def spawn(self, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """One server process, pinned to the server's cores, in its own process group, its
        output appended to ``stdout.log``."""
        with open(self.dir / "stdout.log", "ab") as out:
            return subprocess.Popen(
                ["taskset", "-c", self.setup.cpu, *cmd], cwd=self.dir, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **env}, start_new_session=True)

    def after_start(self) -> None:
        time.sleep(0.5)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (every server shuts down cleanly on it); SIGKILL the whole process
        group if it does not."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        else:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the session, if any
            except ProcessLookupError:
                pass
        return proc.returncode

    def storage_url(self) -> str:
        return ""

    def archive_db(self) -> str | None:
        """What bench.mam_fill grows: the SQLite file, or for xmppd also a SQLAlchemy URL
        (None: no filler for this server)."""
        return None


class Xmppd(Server):
    name = "xmppd"
    label = "xmppd"
    user_kind = "xmppd"

    def version(self) -> str:
        r = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                           capture_output=True, text=True)
        return f"git {r.stdout.strip() or '?'}"

    def storage_url(self) -> str:
        return self.setup.xmppd_storage or f"sqlite:///{self.dir / 'data' / 'xmppd.sqlite'}"

    def plugins(self, opts: Options) -> list[str]:
        """The peers' module set: roster and presence, offline storage, MUC, MAM on demand
        (not carbons, stream management or CSI, which the peers' configs do not load either).
        MUC is left out while the plugin is not in the tree."""
        names = ["disco", "ping", "roster", "presence", "offline"]
        if (ROOT / "plugins" / "muc" / "__init__.py").exists():
            names.append("muc")
        if opts.mam:
            names.append("mam")
        if self.setup.stream_management:
            names.append("smacks")
        return names

    @staticmethod
    def muc_options() -> str:
        # As configured for the peers: rooms usable at once, no rate limit, no room archive.
        return """
[plugins.muc]
room_creation = "anyone"
lock_rooms = false
max_occupants = 10000
default_max_users = 10000
default_archiving = false
message_rate = 1000000.0
message_burst = 1000000
"""

    def archive_db(self) -> str | None:
        return self.storage_url()

    def command(self, opts: Options) -> tuple[list[str], dict[str, str]]:
        return self.node_command(opts, self.dir / "xmppd.toml", self.log, "")

    def node_command(self, opts: Options, path: Path, log: Path, extra: str,
                     data: str = "data") -> tuple[list[str], dict[str, str]]:
        s = self.setup
        cfg = f"""# generated by bench/servers.py
data_dir = "{self.dir / data}"

[hosts."{s.domain}"]
cert = "{s.cert}"
key = "{s.key}"

[[listeners]]
type = "c2s"
port = {self.port}
address = "127.0.0.1"
reuse_port = {"true" if extra else "false"}

[storage]
url = "{self.storage_url()}"

[tls]
require_c2s = {"true" if opts.tls_required else "false"}

[log]
level = "warn"
file = "{log}"
{extra}

[plugins]
enabled = {json.dumps(self.plugins(opts))}

[plugins.ping]
interval = 86400.0

[plugins.offline]
quota = 10000000
{self.muc_options() if "muc" in self.plugins(opts) else ""}"""
        path.write_text(cfg)
        return ([PYTHON, "-m", "xmppd", "run", "-c", str(path),
                 "--ports-file", str(path.with_suffix(".ports.json"))],
                {"PYTHONUNBUFFERED": "1"})


class XmppdCluster(Xmppd):
    """xmppd the way it uses more than one core: NODES processes sharing the client port
    (SO_REUSEPORT: the kernel spreads connections over them), one database and one Redis
    (cluster/node.py). Stanzas between users on different nodes cross Redis."""

    name = "xmppd-cluster"
    label = "xmppd cluster"
    nodes = 2

    def __init__(self, setup: Setup, port: int) -> None:
        super().__init__(setup, port)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.label = f"xmppd ({self.nodes} nodes)"

    def available(self) -> str | None:
        if not self.setup.cluster_storage:
            return "needs --xmppd-cluster-storage (a PostgreSQL or MariaDB database URL)"
        try:
            with socket.create_connection(_host_port(self.setup.redis_url), timeout=2):
                return None
        except OSError as exc:
            return f"no Redis at {self.setup.redis_url}: {exc}"

    def storage_url(self) -> str:
        return self.setup.cluster_storage

    @property
    def pid(self) -> int:
        return self.procs[0].pid

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def start(self, opts: Options) -> int:
        port = free_port(self.port)
        self.port = port
        prefix = f"bench-{os.getpid()}-{time.monotonic_ns()}"
        try:
            for i in range(self.nodes):
                extra = (f'\n[cluster]\nredis_url = "{self.setup.redis_url}"\n'
                         f'node = "n{i}"\nprefix = "{prefix}"\n')
                path = self.dir / f"node{i}.toml"
                # a data directory each: a node refuses one another process runs in
                cmd, env = self.node_command(opts, path, self.dir / f"node{i}.log", extra,
                                             f"data{i}")
                ports = path.with_suffix(".ports.json")
                ports.unlink(missing_ok=True)
                proc = self.spawn(cmd, env)
                self.procs.append(proc)
                deadline = time.monotonic() + self.start_timeout
                while not ports.exists():  # nodes join one after the other
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise ServerError(f"node {i} did not start:\n"
                                          f"{tail(self.dir / f'node{i}.log')}")
                    time.sleep(0.1)
            time.sleep(1.0)  # heartbeats: every node sees every other
        except BaseException:
            self.stop(timeout=5)
            raise
        return self.pid

    def stop(self, timeout: float = 30.0) -> int | None:
        procs, self.procs = self.procs, []
        code: int | None = None
        for proc in procs:
            self.proc = proc
            rc = super().stop(timeout)
            code = rc if code in (None, 0) else code
        return code


def _host_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    return u.hostname or "127.0.0.1", u.port or 6379


class Prosody(Server):
    name = "prosody"
    label = "Prosody"

    def available(self) -> str | None:
        return None if shutil.which("prosody") else "apt-get install -y prosody lua-dbi-sqlite3"

    def version(self) -> str:
        # `prosody --version` would start a server; ask the package manager instead.
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "prosody"],
                           capture_output=True, text=True)
        return r.stdout.strip() or "?"

    def archive_db(self) -> str | None:
        return str(self.dir / "data" / "prosody.sqlite")

    def command(self, opts: Options) -> tuple[list[str], dict[str, str]]:
        s, d = self.setup, self.dir
        (d / "data").mkdir(exist_ok=True)
        modules = ["roster", "saslauth", "tls", "disco", "ping", "register", "offline",
                   "posix"]
        if opts.mam:
            modules.append("mam")
        g = {
            "run_as_root": True,
            "pidfile": str(d / "prosody.pid"),
            "data_path": str(d / "data"),
            "certificates": str(s.cert.parent),
            "network_backend": "epoll",
            "c2s_ports": [self.port],
            "c2s_interfaces": ["127.0.0.1"],
            "c2s_direct_tls_ports": [],
            "s2s_ports": [],
            "http_ports": [],
            "https_ports": [],
            "component_ports": [],
            "modules_enabled": modules,
            "modules_disabled": ["s2s"],
            "c2s_require_encryption": opts.tls_required,
            "allow_registration": True,
            "authentication": "internal_hashed",
            "password_hash": "SHA-1",
            "default_iteration_count": 4096,
            "storage": "sql",
            "sql": {"driver": "SQLite3", "database": str(d / "data" / "prosody.sqlite")},
            "archive_expires_after": "never",
            "default_archive_policy": True,
        }
        lines = ["-- generated by bench/servers.py"]
        lines += [f"{k} = {_lua(v)}" for k, v in g.items()]
        lines.append(f'log = {{ {{ levels = {{ min = "warn" }}, to = "file", '
                     f'filename = {_lua(str(self.log))} }} }}')
        lines.append(f"VirtualHost {_lua(s.domain)}")
        lines.append(f"  ssl = {{ certificate = {_lua(str(s.cert))}, key = {_lua(str(s.key))} }}")
        lines.append(f'Component {_lua("conference." + s.domain)} "muc"')
        lines.append("  muc_room_locking = false")
        lines.append("  muc_tombstones = false")
        lines.append("  restrict_room_creation = false")
        path = d / "prosody.cfg.lua"
        path.write_text("\n".join(lines) + "\n")
        return ["prosody", "-F", "--config", str(path)], {}


class Ejabberd(Server):
    name = "ejabberd"
    label = "ejabberd"
    start_timeout = 90.0
    LIBS = Path("/usr/lib/x86_64-linux-gnu")

    def available(self) -> str | None:
        if not shutil.which("erl") or not list(self.LIBS.glob("ejabberd-*")):
            return "apt-get install -y ejabberd erlang-p1-sqlite3"
        return None

    def version(self) -> str:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "ejabberd"],
                           capture_output=True, text=True)
        return r.stdout.strip() or "?"

    def archive_db(self) -> str | None:
        return str(self.dir / "ejabberd.db")

    def command(self, opts: Options) -> tuple[list[str], dict[str, str]]:
        s, d = self.setup, self.dir
        (d / "spool").mkdir(exist_ok=True)
        mam = ("  mod_mam:\n    default: always\n    db_type: sql\n"
               "    assume_mam_usage: true\n") if opts.mam else ""
        cfg = f"""# generated by bench/servers.py
hosts: ["{s.domain}"]
loglevel: warning
log_rotate_count: 0
certfiles: ["{s.cert}", "{s.key}"]
listen:
  -
    port: {self.port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: true
    starttls_required: {"true" if opts.tls_required else "false"}
    max_stanza_size: 262144
    shaper: none
    access: c2s
    backlog: 1024
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
default_db: sql
sql_type: sqlite
sql_database: "{d / 'ejabberd.db'}"
registration_timeout: infinity
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  register:
    allow: all
  muc_create:
    allow: all
shaper_rules:
  max_user_offline_messages: 10000000
  max_user_sessions: 10000
modules:
  mod_roster: {{}}
  mod_disco: {{}}
  mod_ping: {{}}
  mod_register:
    ip_access: all
    access: register
    password_strength: 0
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_muc:
    host: "conference.@HOST@"
    access: all
    access_create: muc_create
    max_users: 10000
    max_user_conferences: 10000
    history_size: 20
    default_room_options:
      mam: false
{mam}"""
        path = d / "ejabberd.yml"
        path.write_text(cfg)
        env = {
            "ERL_LIBS": str(self.LIBS),
            "EJABBERD_CONFIG_PATH": str(path),
            "EJABBERD_LOG_PATH": str(self.log),
            "ERL_CRASH_DUMP": str(d / "erl_crash.dump"),
            "ERL_MAX_PORTS": "32000",
            "ERL_MAX_ETS_TABLES": "1400",
            "HOME": str(d),
        }
        return (["erl", "+K", "true", "+P", "250000", "-noinput", "-noshell",
                 "-mnesia", "dir", json.dumps(str(d / "spool")), "-s", "ejabberd"], env)

    def after_start(self) -> None:
        time.sleep(1.0)  # modules finish starting just after the listener opens


KINDS: dict[str, type[Server]] = {"xmppd": Xmppd, "prosody": Prosody, "ejabberd": Ejabberd,
                                  "xmppd-cluster": XmppdCluster}
