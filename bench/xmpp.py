"""A minimal asyncio XMPP client for load generation: raw sockets, expat, STARTTLS, SASL, bind.

It knows only what the scenarios need and costs a few microseconds per stanza, so that the
generator's core stays far from saturation (compare.py flags the runs where it does not).
Any RFC 6120 server works: nothing here is specific to xmppd.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import itertools
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat
from xml.sax.saxutils import escape, quoteattr

import scramp.core
from scramp import ScramClient

NS_CLIENT = "jabber:client"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SM = "urn:xmpp:sm:3"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_PING = "urn:xmpp:ping"
NS_REGISTER = "jabber:iq:register"
MECHANISMS = ("SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN")


def _cache_salted_password() -> None:
    """scramp recomputes PBKDF2 (4096+ rounds, ~2 ms) on every login. Real clients cache the
    salted password per (salt, iterations); without that the generator's core, not the
    server, would limit the login and idle scenarios."""
    original = scramp.core.hi

    @functools.lru_cache(maxsize=1 << 16)
    def cached(hf: Any, password: bytes, salt: bytes, iterations: int) -> bytes:
        result: bytes = original(hf, password, salt, iterations)
        return result

    def hi(hf: Any, password: Any, salt: Any, iterations: Any) -> bytes:
        return cached(hf, bytes(password), bytes(salt), int(iterations))

    scramp.core.hi = hi


_cache_salted_password()


class XmppError(Exception):
    """The peer refused something (stream error, SASL failure, IQ error) or went away."""


class El:
    """A parsed element. Names keep their prefix ("stream:features"); namespaces are only the
    literal ``xmlns`` attribute, which is all a load generator needs to tell stanzas apart."""

    __slots__ = ("attrs", "children", "name", "text")

    def __init__(self, name: str, attrs: dict[str, str]) -> None:
        self.name = name
        self.attrs = attrs
        self.children: list[El] = []
        self.text = ""

    def get(self, key: str, default: str = "") -> str:
        return self.attrs.get(key, default)

    def find(self, name: str) -> El | None:
        for c in self.children:
            if c.name == name:
                return c
        return None

    def find_ns(self, name: str, xmlns: str) -> El | None:
        for c in self.children:
            if c.name == name and c.attrs.get("xmlns") == xmlns:
                return c
        return None

    def findall(self, name: str) -> list[El]:
        return [c for c in self.children if c.name == name]

    def __repr__(self) -> str:
        return f"<{self.name} {self.attrs} {[c.name for c in self.children]} {self.text[:40]!r}>"


class StreamParser:
    """Incremental expat parser: depth 1 is the stream header, depth 2 elements are stanzas."""

    def __init__(self, on_element: Callable[[El], None],
                 on_header: Callable[[dict[str, str]], None], on_end: Callable[[], None]) -> None:
        self.on_element, self.on_header, self.on_end = on_element, on_header, on_end
        self.stack: list[El] = []
        self.depth = 0
        p = expat.ParserCreate()
        p.buffer_text = True
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._text
        self.parser = p

    def feed(self, data: bytes) -> None:
        self.parser.Parse(data, False)

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:
            self.on_header(attrs)
            return
        el = El(name, attrs)
        if self.stack:
            self.stack[-1].children.append(el)
        self.stack.append(el)

    def _end(self, _name: str) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.on_end()
            return
        el = self.stack.pop()
        if self.depth == 1:
            self.on_element(el)

    def _text(self, data: str) -> None:
        if self.stack:
            self.stack[-1].text += data


@dataclass(frozen=True)
class ClientConfig:
    host: str = "127.0.0.1"
    port: int = 5222
    domain: str = "localhost"
    password: str = "bench"
    tls: bool = True
    mechanism: str = "SCRAM-SHA-1"
    ca_file: str | None = None
    timeout: float = 30.0
    source: str | None = None  # local address to connect from (another 127.x on loopback)
    # XEP-0198 with resumption after binding; <r/> is answered with <a h/>
    stream_management: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        return _ssl_context(self.ca_file)


@functools.cache
def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """One shared context: session tickets are not resumed (each login is a full handshake,
    as for a client that reconnects after a while)."""
    if ca_file is not None:
        return ssl.create_default_context(cafile=ca_file)
    # No CA store at all: OpenSSL still builds and checks the chain under CERT_NONE, and
    # searching the system store on every handshake would double the generator's cost.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


_ids = itertools.count(1)


def new_id(prefix: str = "b") -> str:
    return f"{prefix}{next(_ids):x}"


class Connection(asyncio.Protocol):
    """One client stream. During negotiation elements are awaited with ``next()``; once bound,
    every stanza goes straight to ``on_stanza`` (no queue, no future per stanza)."""

    def __init__(self, cfg: ClientConfig, username: str, resource: str = "") -> None:
        self.cfg = cfg
        self.username = username
        self.resource = resource
        self.bare = f"{username}@{cfg.domain}"
        self.jid = ""
        self.transport: asyncio.Transport | None = None
        self.parser = self._new_parser()
        self.pending: deque[El] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.on_stanza: Callable[[El], None] | None = None
        self.closed = False
        self.close_reason = ""
        self.closed_event = asyncio.Event()
        self.tls_version = ""
        self.iq_waiters: dict[str, asyncio.Future[El]] = {}
        self.sm_h: int | None = None  # stanzas handled since <enabled/> (None: SM off)

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed(data)
        except expat.ExpatError as exc:
            self._lost(f"XML error: {exc}")
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(f"connection lost: {exc}" if exc else "connection closed")

    def _lost(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = self.close_reason or reason
            self.closed_event.set()
        self._wake()
        for fut in self.iq_waiters.values():
            if not fut.done():
                fut.set_exception(XmppError(self.close_reason))
        self.iq_waiters.clear()

    # -- parsing ----------------------------------------------------------------------------
    def _new_parser(self) -> StreamParser:
        return StreamParser(self._element, self._header, self._stream_end)

    def _header(self, attrs: dict[str, str]) -> None:
        pass

    def _stream_end(self) -> None:
        self.close_reason = self.close_reason or "server closed the stream"
        if self.transport is not None:
            self.transport.close()

    def _element(self, el: El) -> None:
        if self.sm_h is not None:
            if el.name in ("message", "presence", "iq"):
                self.sm_h = (self.sm_h + 1) % 2 ** 32
            elif el.name == "r":
                self.send(f"<a xmlns='{NS_SM}' h='{self.sm_h}'/>")
                return
        if el.name == "stream:error":
            cond = next((c.name for c in el.children if c.name != "text"), "?")
            self.close_reason = f"stream error: {cond}"
            return
        if el.name == "iq" and el.get("type") in ("result", "error"):
            fut = self.iq_waiters.pop(el.get("id"), None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(el)
                return
        if self.on_stanza is not None:
            self.on_stanza(el)
            return
        self.pending.append(el)
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next(self, timeout: float | None = None) -> El:
        """The next top-level element during negotiation."""
        while not self.pending:
            if self.closed:
                raise XmppError(self.close_reason)
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self.waiter, timeout or self.cfg.timeout)
            except TimeoutError:
                raise XmppError("timed out waiting for the server") from None
            finally:
                self.waiter = None
        return self.pending.popleft()

    def set_handler(self, handler: Callable[[El], None]) -> None:
        """Switch to callback mode; stanzas that arrived meanwhile are handed over first."""
        self.on_stanza = handler
        while self.pending:
            handler(self.pending.popleft())

    # -- output -----------------------------------------------------------------------------
    def send(self, data: str) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data.encode())

    async def iq(self, xml: str, iq_id: str, timeout: float | None = None) -> El:
        """Send an IQ whose id is ``iq_id`` and wait for its result (XmppError on type=error)."""
        fut: asyncio.Future[El] = asyncio.get_running_loop().create_future()
        self.iq_waiters[iq_id] = fut
        self.send(xml)
        try:
            el = await asyncio.wait_for(fut, timeout or self.cfg.timeout)
        except TimeoutError:
            self.iq_waiters.pop(iq_id, None)
            raise XmppError(f"iq {iq_id} timed out") from None
        if el.get("type") == "error":
            raise XmppError(f"iq error: {error_condition(el)}")
        return el

    async def ping(self, timeout: float | None = None) -> None:
        """A round trip to the server: a barrier for everything this session sent before."""
        i = new_id("p")
        await self.iq(f"<iq type='get' id='{i}' to='{self.cfg.domain}'>"
                      f"<ping xmlns='{NS_PING}'/></iq>", i, timeout)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.send("</stream:stream>")
            self.transport.close()

    # -- negotiation (RFC 6120 §4-§7) -------------------------------------------------------
    async def connect(self) -> El:
        """TCP (+STARTTLS); returns the features offered for authentication."""
        loop = asyncio.get_running_loop()
        local = (self.cfg.source, 0) if self.cfg.source else None
        await asyncio.wait_for(loop.create_connection(lambda: self, self.cfg.host, self.cfg.port,
                                                      local_addr=local), self.cfg.timeout)
        features = await self._open_stream()
        if self.cfg.tls:
            if features.find("starttls") is None:
                raise XmppError("server does not offer STARTTLS")
            self.send(f"<starttls xmlns='{NS_TLS}'/>")
            el = await self.next()
            if el.name != "proceed":
                raise XmppError(f"STARTTLS refused: {el.name}")
            assert self.transport is not None
            tls = await asyncio.wait_for(loop.start_tls(
                self.transport, self, self.cfg.ssl_context(), server_hostname=self.cfg.domain),
                self.cfg.timeout)
            if tls is None:
                raise XmppError("TLS handshake did not complete")
            self.transport = tls
            ssl_obj = tls.get_extra_info("ssl_object")
            if ssl_obj is not None:
                self.tls_version = f"{ssl_obj.version()} {ssl_obj.cipher()[0]}"
            features = await self._open_stream()
        return features

    async def _open_stream(self) -> El:
        self.parser = self._new_parser()
        self.pending.clear()
        self.send(f"<?xml version='1.0'?><stream:stream to='{self.cfg.domain}' version='1.0' "
                  f"xmlns='{NS_CLIENT}' xmlns:stream='http://etherx.jabber.org/streams'>")
        el = await self.next()
        if el.name != "stream:features":
            raise XmppError(f"expected stream features, got {el.name}")
        return el

    async def authenticate(self, features: El) -> El:
        """SASL with the configured mechanism; returns the post-auth features."""
        offered = {m.text.strip() for mechs in features.findall("mechanisms")
                   for m in mechs.findall("mechanism")}
        mech = self.cfg.mechanism
        if mech not in offered:
            raise XmppError(f"{mech} not offered (server offers {sorted(offered)})")
        if mech == "PLAIN":
            token = base64.b64encode(f"\0{self.username}\0{self.cfg.password}".encode()).decode()
            self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>")
            await self._sasl_outcome(None)
        else:
            client = ScramClient([mech], self.username, self.cfg.password)
            first = base64.b64encode(client.get_client_first().encode()).decode()
            self.send(f"<auth xmlns='{NS_SASL}' mechanism='{mech}'>{first}</auth>")
            el = await self.next()
            if el.name != "challenge":
                raise XmppError(f"SASL: {_sasl_failure(el)}")
            client.set_server_first(base64.b64decode(el.text).decode())
            final = base64.b64encode(client.get_client_final().encode()).decode()
            self.send(f"<response xmlns='{NS_SASL}'>{final}</response>")
            await self._sasl_outcome(client)
        return await self._open_stream()

    async def _sasl_outcome(self, client: ScramClient | None) -> None:
        el = await self.next()
        if el.name != "success":
            raise XmppError(f"SASL: {_sasl_failure(el)}")
        if client is not None:
            client.set_server_final(base64.b64decode(el.text).decode())

    async def bind(self, features: El) -> str:
        res = f"<resource>{escape(self.resource)}</resource>" if self.resource else ""
        i = new_id("bind")
        el = await self.iq(f"<iq type='set' id='{i}'><bind xmlns='{NS_BIND}'>{res}</bind></iq>",
                           i)
        bind = el.find("bind")
        jid = bind.find("jid") if bind is not None else None
        if jid is None:
            raise XmppError("bind result without a JID")
        self.jid = jid.text.strip()
        session = features.find("session")
        if session is not None and session.find("optional") is None:
            i = new_id("sess")
            await self.iq(f"<iq type='set' id='{i}'><session xmlns='{NS_SESSION}'/></iq>", i)
        return self.jid

    async def login(self, presence: bool = False) -> float:
        """Connect, (STARTTLS,) authenticate and bind; seconds it took."""
        t0 = time.perf_counter()
        features = await self.connect()
        features = await self.authenticate(features)
        await self.bind(features)
        if self.cfg.stream_management:
            self.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
            el = await self.next()
            if el.name != "enabled":
                raise XmppError(f"stream management: <{el.name}/>")
            self.sm_h = 0
        if presence:
            self.send("<presence/>")
        return time.perf_counter() - t0

    async def register(self) -> bool:
        """XEP-0077 in-band registration on an unauthenticated stream; False if it exists."""
        i = new_id("reg")
        try:
            await self.iq(f"<iq type='set' id='{i}'><query xmlns='{NS_REGISTER}'>"
                          f"<username>{escape(self.username)}</username>"
                          f"<password>{escape(self.cfg.password)}</password></query></iq>", i)
        except XmppError as exc:
            if "conflict" in str(exc):
                return False
            raise
        return True


def _sasl_failure(el: El) -> str:
    if el.name == "failure":
        return next((c.name for c in el.children if c.name != "text"), "failure")
    return f"unexpected <{el.name}>"


def error_condition(el: El) -> str:
    """The defined condition of an error stanza (RFC 6120 §8.3.3)."""
    err = el.find("error")
    if err is None:
        return "?"
    return next((c.name for c in err.children if c.name != "text"), "?")


def attr(value: str) -> str:
    return quoteattr(value)


async def open_sessions(cfg: ClientConfig, users: list[str], concurrency: int,
                        presence: bool = True, resource: str = "bench"
                        ) -> tuple[list[Connection], list[float]]:
    """Log every user in (bounded concurrency) and make sure each initial presence has been
    processed (a ping round trip) before returning, so bare-JID delivery sees them available."""
    sem = asyncio.Semaphore(concurrency)
    conns = [Connection(cfg, u, resource) for u in users]
    times: list[float] = [0.0] * len(users)

    async def one(i: int) -> None:
        async with sem:
            times[i] = await conns[i].login(presence=presence)
            if presence:
                await conns[i].ping()

    results = await asyncio.gather(*(one(i) for i in range(len(conns))), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for c in conns:
            c.close()
        raise XmppError(f"{len(errors)} of {len(users)} logins failed, first: {errors[0]}")
    return conns, times
