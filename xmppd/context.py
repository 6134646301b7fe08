"""ServerContext: what streams, federation, components and the cluster may use of the server.

The client streams (``xmppd.c2s``, ``xmppd.websocket``, ``xmppd.bosh``, ``xmppd.xmlstream``),
the s2s manager and streams (``federation/``), the component manager (``components/``) and the
Redis cluster (``cluster/``) are handed the server at construction. They are typed against
this protocol, not against ``xmppd.server.XmppServer``, so that what they reach into is named
in one place, and their modules need not import the module that wires them together.
``XmppServer`` satisfies it (mypy checks that in xmppd/server.py). Plugins see the server
only through ``xmppd.plugin.Host``.

Everything is read-only here (properties): the layers above use these objects, they do not
replace them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall

from storage.facade import Storage
from xmppd.accounts import Accounts
from xmppd.authguard import AuthGuard
from xmppd.config import ServerConfig
from xmppd.errors import StreamError
from xmppd.plugin import Host
from xmppd.router import Router
from xmppd.sessions import Session, SessionManager
from xmppd.stats import Stats
from xmppd.tls import CertStore
from xmppd.usercache import UserCaches


class Clock(Protocol):
    """The part of the reactor that schedules (``twisted.internet.task.Clock`` in tests)."""

    def callLater(self, delay: float, callable: Callable[..., object],  # noqa: N802
                  *args: object, **kw: object) -> IDelayedCall: ...

    def seconds(self) -> float: ...


class Connection(Protocol):
    """An open client connection (c2s over TCP, WebSocket or BOSH) as the server holds it:
    counted in metrics, closed with <system-shutdown/> on stop (RFC 6120 §4.9.3.20)."""

    transport_kind: str

    def close(self, error: StreamError | None = None) -> None: ...

    def abort(self) -> None: ...


class ServerContext(Protocol):
    @property
    def config(self) -> ServerConfig:
        """The configuration in force (a reload replaces it: read it when needed)."""

    @property
    def clock(self) -> Clock: ...

    @property
    def reactor(self) -> Any:
        """The reactor, for what a clock cannot do: connectTCP, listenTCP, listenSSL."""

    @property
    def hosts(self) -> dict[str, Host]:
        """The served domains."""

    @property
    def router(self) -> Router: ...

    @property
    def sessions(self) -> SessionManager: ...

    @property
    def certs(self) -> CertStore | None:
        """Certificates per domain; None until the server starts."""

    @property
    def stats(self) -> Stats:
        """Hot-path counters (xmppd/stats.py); plain integers, no locks."""

    @property
    def connections(self) -> set[Connection]:
        """Open client connections: a c2s stream adds itself when connected and removes itself
        when closed."""

    @property
    def auth_guard(self) -> AuthGuard: ...

    @property
    def accounts(self) -> Accounts: ...

    @property
    def storage(self) -> Storage:
        """The stores (XEP-0484 FAST tokens are read and written during authentication)."""

    @property
    def caches(self) -> UserCaches:
        """Per-user caches kept coherent across cluster nodes."""

    @property
    def stopping(self) -> bool:
        """A clean stop has begun."""

    def track(self, d: Deferred[Any]) -> None:
        """Unfinished work a clean stop must wait for."""

    def session_bound(self, session: Session) -> None:
        """A c2s stream bound a resource (RFC 6120 §7)."""

    def session_ended(self, session: Session, clean: bool) -> None:
        """A bound stream's connection closed: hibernated (XEP-0198) or ended."""

    def end_session(self, session: Session, reason: str) -> None:
        """Unbind a session and announce its end, exactly once."""

    def bound_port(self, kind: str) -> int | None:
        """The first bound port of a listener type (BOSH points plain HTTP at HTTPS)."""

    def auth_reply_delay(self, ip: str) -> float:
        """How long to hold back an authentication failure reply to an address."""

