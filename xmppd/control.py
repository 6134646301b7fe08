"""The control socket: how ``xmppd <command>`` reaches the running server (like prosodyctl's
shell or ejabberdctl).

``<data_dir>/control.sock`` is a UNIX socket the server creates with mode 0600 (bound under a
umask that never lets anyone else in, then checked) and whose peers must run as the server's
user (or root, SO_PEERCRED where the system has it). One request per connection: a line of
JSON ``{"op": NAME, "args": {PARAM: VALUE | [VALUES]}, "domain": HOST?}``, answered with one
line ``{"ok": true, "result": {...}}`` or ``{"ok": false, "error": {"condition", "text",
"field"}}``, then the server closes the connection. A request larger than MAX_REQUEST, one
that is not complete within REQUEST_TIMEOUT, or that is not such JSON gets an error; no
request ever gets a traceback. The operations are xmppd/ops.py's.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IDelayedCall, IListeningPort

from xmppd import ops
from xmppd.logs import Logger

if TYPE_CHECKING:
    from xmppd.config import ServerConfig
    from xmppd.server import XmppServer

log = Logger(namespace="xmppd.control")

MAX_REQUEST = 65536  # bytes of one request line
MAX_RESPONSE = 64 * 1024 * 1024  # what the client reads at most
REQUEST_TIMEOUT = 10.0  # seconds for the request to arrive
MAX_CONNECTIONS = 16


def socket_path(cfg: ServerConfig) -> Path:
    return cfg.resolve(cfg.data_dir) / "control.sock"


class ControlError(Exception):
    """The control socket cannot be used (the CLI reports it)."""


class NotRunning(ControlError):
    """Nobody listens on the control socket: the server is not running."""


# -- server side ----------------------------------------------------------------------------------
class ControlProtocol(protocol.Protocol):
    def __init__(self, server: XmppServer) -> None:
        self.server = server
        self.buffer = b""
        self.done = False
        self.timer: IDelayedCall | None = None

    def connectionMade(self) -> None:  # noqa: N802
        factory: ControlFactory = self.factory
        factory.open += 1
        if factory.open > MAX_CONNECTIONS:
            self.reply_error("resource-constraint", "too many control connections")
            return
        if not _peer_allowed(self.transport):
            log.warn("control socket: refused a peer running as another user")
            self.reply_error("forbidden", "only the server's user may use the control socket")
            return
        self.timer = self.server.clock.callLater(REQUEST_TIMEOUT, self._expired)

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        factory: ControlFactory = self.factory
        factory.open -= 1
        self.done = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()

    def _expired(self) -> None:
        self.reply_error("bad-request", "no complete request received in time")

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.done:
            return
        self.buffer += data
        line, newline, _rest = self.buffer.partition(b"\n")
        if not newline:
            if len(self.buffer) > MAX_REQUEST:
                self.reply_error("policy-violation",
                                 f"request larger than {MAX_REQUEST} bytes")
            return
        if len(line) > MAX_REQUEST:
            self.reply_error("policy-violation", f"request larger than {MAX_REQUEST} bytes")
            return
        self.done = True
        self.buffer = b""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.transport.pauseProducing()  # type: ignore[union-attr]  # one request only
        defer.Deferred.fromCoroutine(self.handle(line))

    async def handle(self, line: bytes) -> None:
        try:
            op, args, domain = parse_request(line, self.server.config)
            ctx = ops.Context(self.server.config, self.server.storage, self.server.accounts,
                              self.server, domain=domain, actor="control socket",
                              clock=self.server.clock)
            raw = {k: ops.normalise(v) for k, v in args.items()}
            result = await ops.execute(op, ctx, raw)
        except ops.OpError as err:
            self.reply_error(err.condition, err.text, err.field)
            return
        except Exception:
            log.failure("control request failed")
            self.reply_error("internal-server-error", "the request failed; see the server log")
            return
        self.reply({"ok": True, "result": result.to_json()})

    def reply_error(self, condition: str, text: str, field: str | None = None) -> None:
        self.done = True
        self.reply({"ok": False, "error": {"condition": condition, "text": text,
                                           "field": field}})

    def reply(self, body: Mapping[str, Any]) -> None:
        if self.transport is None:
            return
        self.transport.write(json.dumps(body).encode() + b"\n")
        self.transport.loseConnection()


def parse_request(line: bytes, cfg: ServerConfig) -> tuple[ops.Operation, dict[str, Any],
                                                           str | None]:
    try:
        req = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ops.OpError("bad-request", "the request is not a line of JSON") from None
    if not isinstance(req, dict) or not isinstance(req.get("op"), str):
        raise ops.OpError("bad-request", 'the request must be an object with "op"')
    unknown = set(req) - {"op", "args", "domain"}
    if unknown:
        raise ops.OpError("bad-request", f"unknown request keys: {', '.join(sorted(unknown))}")
    op = ops.get(req["op"])
    args = req.get("args", {})
    if not isinstance(args, dict):
        raise ops.OpError("bad-request", '"args" must be an object')
    names = {p.name for p in op.params}
    for key in args:
        if key not in names:
            raise ops.OpError("bad-request", f"{op.name} has no argument {key!r}", key)
    domain = req.get("domain")
    if domain is not None and (not isinstance(domain, str) or domain not in cfg.hosts):
        raise ops.OpError("bad-request", f"{domain!r} is not a host of this server", "domain")
    return op, args, domain


def _peer_allowed(transport: Any) -> bool:
    """The peer runs as our user or root (Linux SO_PEERCRED; elsewhere the mode decides)."""
    cred = getattr(socket, "SO_PEERCRED", None)
    if cred is None:
        return True
    try:
        raw = transport.getHandle().getsockopt(socket.SOL_SOCKET, cred, struct.calcsize("3i"))
    except OSError:
        return False
    _pid, uid, _gid = struct.unpack("3i", raw)
    return uid in (0, os.getuid())


class ControlFactory(protocol.Factory):
    noisy = False

    def __init__(self, server: XmppServer) -> None:
        self.server = server
        self.open = 0

    def buildProtocol(self, addr: Any) -> ControlProtocol:  # noqa: N802
        p = ControlProtocol(self.server)
        p.factory = self
        return p


class ControlServer:
    def __init__(self, server: XmppServer) -> None:
        self.server = server
        self.path = socket_path(server.config)
        self.port: IListeningPort | None = None

    def start(self) -> None:
        """Refuses to start over a socket another running server answers on."""
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if _answers(path):
                raise ControlError(f"another xmppd is running with this data directory "
                                   f"(it answers on {path})")
            path.unlink()  # left over from a server that did not stop cleanly
        # Bound under a umask that lets nobody else in, then chmod 0600 (Twisted's own
        # chmod, with the mode given): never, not even for a moment, open to others.
        old = os.umask(0o177)
        try:
            self.port = self.server.reactor.listenUNIX(
                str(path), ControlFactory(self.server), backlog=MAX_CONNECTIONS, mode=0o600)
        finally:
            os.umask(old)
        mode = path.stat().st_mode & 0o777
        if mode != 0o600:
            raise ControlError(f"{path}: mode {mode:o}, not 600")
        log.info("control socket at {path}", path=str(path))

    def stop(self) -> None:
        """Twisted removes the socket file."""
        if self.port is not None:
            self.port.stopListening()
            self.port = None


def _answers(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(str(path))
    except OSError:
        return False
    finally:
        s.close()
    return True


# -- client side (the command line) ---------------------------------------------------------------
def call(path: Path, op: str, args: Mapping[str, Any], domain: str | None = None,
         timeout: float = 300.0) -> dict[str, Any]:
    """Send one request; the decoded answer. NotRunning if nobody listens; ControlError if
    the socket cannot be used (permissions) or the answer is unreadable."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NotRunning(f"the server is not running (no control socket at {path})") \
                from None
        except PermissionError:
            raise ControlError(f"permission denied on {path}: run this as the user the "
                               "server runs as") from None
        except OSError as exc:
            raise ControlError(f"cannot reach the server at {path}: {exc}") from None
        request: dict[str, Any] = {"op": op, "args": dict(args)}
        if domain is not None:
            request["domain"] = domain
        s.sendall(json.dumps(request).encode() + b"\n")
        chunks, size = [], 0
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_RESPONSE:
                raise ControlError("the server's answer is too large")
    except TimeoutError:
        raise ControlError(f"no answer from the server within {timeout:.0f} s") from None
    finally:
        s.close()
    try:
        answer = json.loads(b"".join(chunks).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ControlError("the server's answer is not JSON (did it stop?)") from None
    if not isinstance(answer, dict):
        raise ControlError("the server's answer is not a JSON object")
    return answer
