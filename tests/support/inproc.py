"""An in-process server (no sockets, in-memory SQLite, task.Clock) for transcript tests."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock

from xmppd import stanza as st
from xmppd.accounts import derive
from xmppd.config import from_dict
from xmppd.errors import StreamError
from xmppd.jid import JID
from xmppd.plugin import load_plugins
from xmppd.server import XmppServer


class FakeSession:
    """A bound c2s session that records what it is sent."""

    kind = "c2s"

    def __init__(self, server: XmppServer, jid: str, priority: int | None = 0) -> None:
        j = JID.parse(jid)
        self.server = server
        self.host = j.domain
        self.jid: JID | None = None
        self.available = False
        self.priority = 0
        self.presence: st.Element | None = None
        self.data: dict[str, Any] = {}
        self.peer = "test"
        self.sent: list[st.Element] = []
        self.raw: list[str] = []
        self.closed_with: StreamError | None = None
        server.sessions.bind(self, j.domain, j.local, j.resource or None)
        if priority is not None:
            p = st.make("presence")
            if priority:
                st.add(p, "priority", text_=str(priority))
            self.stanza(p)

    def send(self, stanza: st.Element) -> None:
        self.sent.append(stanza)

    def send_raw(self, data: str) -> None:
        self.raw.append(data)

    def close(self, error: StreamError | None = None) -> None:
        self.closed_with = error
        self.server.end_session(self, "closed")

    def stanza(self, el: st.Element) -> None:
        """As if the client sent ``el``: stamp 'from' and route it, synchronously."""
        el.attributes["from"] = str(self.jid)
        resolve(self.server.router.route(el, self))

    def take(self) -> list[st.Element]:
        out, self.sent = self.sent, []
        return out


def resolve(coro: Any) -> Any:
    """Run a coroutine that (with inline storage) completes synchronously."""
    d = defer.Deferred.fromCoroutine(coro)
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "coroutine did not complete synchronously"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def make_server(plugins: list[str] | None = None, hosts: tuple[str, ...] = ("localhost",),
                options: dict[str, Any] | None = None,
                extra: dict[str, Any] | None = None) -> XmppServer:
    """``extra``: more top-level configuration ([components], listeners ...)."""
    cfg = from_dict({
        **(extra or {}),
        "hosts": {h: {} for h in hosts},
        "storage": {"url": "sqlite://"},
        "plugins": {"enabled": plugins if plugins is not None else ["disco", "ping"],
                    **(options or {})},
    })
    server = XmppServer(cfg, Clock())
    server.db.migrate()  # never started: storage calls run inline, so tests stay synchronous
    for domain, host in server.hosts.items():
        resolve(load_plugins(host, cfg.enabled_plugins(domain)))
    return server


def add_user(server: XmppServer, jid: str, password: str = "pw") -> None:
    j = JID.parse(jid)
    resolve(_create(server, j, password))


async def _create(server: XmppServer, j: JID, password: str) -> None:
    await server.storage.accounts.create(j.domain, j.local, derive(password, 4096))
