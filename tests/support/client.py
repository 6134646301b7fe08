"""slixmpp clients over real TCP + TLS, verifying the server certificate against the test CA."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import slixmpp
from slixmpp.stanza import Message, Presence

from tests.support.barrier import barrier
from tests.support.server import ServerProcess

T = TypeVar("T")
logging.getLogger("slixmpp").setLevel(logging.ERROR)


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Run one async test body (each test gets a fresh event loop)."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid: str, password: str, ca_file: str, direct_tls: bool = False,
                 mechanism: str | None = None, plugins: tuple[str, ...] = ()) -> None:
        super().__init__(jid, password, sasl_mech=mechanism)
        self.ssl_context.load_verify_locations(ca_file)
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.enable_plaintext = False
        self.auto_authorize = None  # tests answer subscription requests themselves
        self.auto_subscribe = False
        for p in ("xep_0030", "xep_0199", *plugins):
            self.register_plugin(p)
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.presences: asyncio.Queue[Presence] = asyncio.Queue()
        self.started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.add_event_handler("session_start", self._on_start)
        self.add_event_handler("failed_all_auth", self._on_failed)
        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("presence", self.presences.put_nowait)
        self.gone: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.add_event_handler("disconnected", lambda e: self.gone.done() or self.gone.set_result(
            str(e)))
        self.stream_errors: list[str] = []
        self.add_event_handler("stream_error", lambda e: self.stream_errors.append(
            e["condition"]))

    def _on_start(self, _event: Any) -> None:
        if not self.started.done():
            self.started.set_result(True)

    def _on_failed(self, _event: Any) -> None:
        if not self.started.done():
            self.started.set_exception(PermissionError("authentication failed"))

    async def next_message(self, timeout: float = 10.0,
                           where: Callable[[Message], bool] | None = None) -> Message:
        while True:
            msg = await asyncio.wait_for(self.messages.get(), timeout)
            if where is None or where(msg):
                return msg

    async def next_presence(self, timeout: float = 10.0,
                            where: Callable[[Presence], bool] | None = None) -> Presence:
        while True:
            p = await asyncio.wait_for(self.presences.get(), timeout)
            if where is None or where(p):
                return p

    async def close(self) -> None:
        if self.is_connected():
            self.disconnect()
            await asyncio.wait_for(self.gone, 10)


async def connect(server: ServerProcess, jid: str, password: str | None = None,
                  direct_tls: bool = False, mechanism: str | None = None,
                  plugins: tuple[str, ...] = (), presence: bool = True,
                  priority: int | None = None, timeout: float = 15.0) -> Client:
    """Log in and (by default) send initial presence; raises PermissionError on auth failure."""
    bare = jid.split("/")[0]
    c = Client(jid, password or server.passwords[bare], str(server.ca.ca_file), direct_tls,
               mechanism, plugins)
    port = server.c2s_tls_port if direct_tls else server.c2s_port
    c.connect("127.0.0.1", port)
    try:
        await asyncio.wait_for(c.started, timeout)
    except BaseException:
        c.abort()
        raise
    if presence:
        if priority is None:
            c.send_presence()
        else:
            c.send_presence(ppriority=priority)
        await barrier(c)  # the server has handled it (broadcast, offline delivery ...)
    return c


async def wait_for(pred: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = pred()
        if not isinstance(r, bool):
            r = await r
        if r:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


async def pushed(c: Client, jid: str, subscription: str, timeout: float = 20.0) -> None:
    """Wait until ``c``'s roster (kept current by roster pushes) shows ``jid`` with
    ``subscription``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not c.client_roster.has_jid(jid) or c.client_roster[jid]["subscription"] != (
            subscription):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no push of {jid} with subscription={subscription}")
        await asyncio.sleep(0.05)
