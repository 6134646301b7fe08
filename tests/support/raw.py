"""A raw XMPP client over asyncio streams, for sending exactly the bytes a test needs."""

from __future__ import annotations

import asyncio
import base64
import ssl
import xml.etree.ElementTree as ET
from typing import Any

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_SM = "urn:xmpp:sm:3"
C = "{jabber:client}"


def q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


class StreamClosed(Exception):
    pass


class RawStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._new_parser()
        self.header: dict[str, str] | None = None
        self.closed_by_peer = False
        self.jid = ""
        self.sm_enabled = False
        self.h = 0  # XEP-0198: stanzas received since SM was enabled (or resumed)
        self._barriers = 0

    def _new_parser(self) -> None:
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.pending: list[ET.Element] = []

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1", tls_ca: str | None = None,
                   source: str | None = None) -> RawStream:
        """Connect; ``source`` picks the local address (any 127.x.y.z on loopback, so a
        test can be several client addresses)."""
        local = (source, 0) if source else None
        if tls_ca is not None:
            ctx = ssl.create_default_context(cafile=tls_ca)
            ctx.check_hostname = False
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx,
                                                           server_hostname="localhost",
                                                           local_addr=local)
        else:
            reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        return cls(reader, writer)

    async def send(self, data: str | bytes) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def _fill(self, timeout: float) -> None:
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        if not data:
            self.closed_by_peer = True
            raise StreamClosed()
        self.parser.feed(data)
        for event, el in self.parser.read_events():
            if event == "start":
                self.depth += 1
                if self.depth == 1:
                    self.header = dict(el.attrib)
            else:
                self.depth -= 1
                if self.depth == 1:
                    self.pending.append(el)
                elif self.depth == 0:
                    self.pending.append(ET.Element("__stream_end__"))

    async def read(self, timeout: float = 10.0) -> ET.Element:
        """The next top-level element from the server ('__stream_end__' for </stream>)."""
        while not self.pending:
            await self._fill(timeout)
        el = self.pending.pop(0)
        if self.sm_enabled and el.tag in (C + "message", C + "presence", C + "iq"):
            self.h = (self.h + 1) % 2 ** 32
        return el

    async def barrier(self, timeout: float = 30.0) -> list[ET.Element]:
        """A ping to the server (see tests/support/barrier.py); returns what arrived before
        the answer, which stays queued for later reads (and is counted for SM then)."""
        self._barriers += 1
        pid = f"barrier{self._barriers}"
        domain = self.jid.split("/")[0].split("@")[-1] if self.jid else "localhost"
        await self.send(f"<iq type='get' id='{pid}' to='{domain}'>"
                        "<ping xmlns='urn:xmpp:ping'/></iq>")
        while True:
            for i, el in enumerate(self.pending):
                if el.tag == C + "iq" and el.get("id") == pid:
                    assert el.get("type") == "result", ET.tostring(el)
                    del self.pending[i]
                    if self.sm_enabled:
                        self.h = (self.h + 1) % 2 ** 32
                    return self.pending[:i]
            await self._fill(timeout)

    async def read_until(self, pred: Any, timeout: float = 10.0) -> ET.Element:
        """Read (and, with SM, count) elements until one matches ``pred``."""
        while True:
            el = await self.read(timeout)
            if pred(el):
                return el

    async def enable_sm(self, resume: bool = True, max_: int | None = None) -> ET.Element:
        extra = f" max='{max_}'" if max_ is not None else ""
        if resume:
            extra += " resume='true'"
        await self.send(f"<enable xmlns='{NS_SM}'{extra}/>")
        el = await self.read_until(lambda e: e.tag.startswith("{" + NS_SM))
        if el.tag == q(NS_SM, "enabled"):
            self.sm_enabled = True
            self.h = 0
        return el

    async def ack(self) -> None:
        await self.send(f"<a xmlns='{NS_SM}' h='{self.h}'/>")

    async def open_stream(self, to: str = "localhost", version: str = "1.0",
                          raw: str | None = None) -> ET.Element:
        """Send a header; return the features element."""
        self._new_parser()
        self.header = None
        await self.send(raw if raw is not None else (
            f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='{NS_STREAMS}' to='{to}' version='{version}'>"))
        el = await self.read()
        return el

    async def starttls(self, ca_file: str) -> None:
        await self.send(f"<starttls xmlns='{NS_TLS}'/>")
        el = await self.read()
        assert el.tag == q(NS_TLS, "proceed"), el.tag
        ctx = ssl.create_default_context(cafile=ca_file)
        await self.writer.start_tls(ctx, server_hostname="localhost")

    async def auth_plain(self, user: str, password: str) -> ET.Element:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        await self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>")
        return await self.read()

    async def bind(self, resource: str | None = None) -> str:
        res = f"<resource>{resource}</resource>" if resource else ""
        await self.send(f"<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'>{res}</bind></iq>")
        el = await self.read()
        jid = el.find(f"{q(NS_BIND, 'bind')}/{q(NS_BIND, 'jid')}")
        assert jid is not None and jid.text, ET.tostring(el)
        self.jid = jid.text
        return jid.text

    async def authenticate(self, ca_file: str, user: str, password: str,
                           domain: str = "localhost") -> ET.Element:
        """TLS + SASL PLAIN + restart; returns the post-auth features."""
        await self.open_stream(domain)
        await self.starttls(ca_file)
        await self.open_stream(domain)
        result = await self.auth_plain(user, password)
        assert result.tag == q(NS_SASL, "success"), ET.tostring(result)
        return await self.open_stream(domain)

    async def login(self, ca_file: str, user: str, password: str, domain: str = "localhost",
                    resource: str | None = None) -> str:
        await self.authenticate(ca_file, user, password, domain)
        return await self.bind(resource)

    def kill(self) -> None:
        """Drop the TCP connection without a closing tag (a dead network, a killed app)."""
        self.writer.transport.abort()

    async def stream_error(self, timeout: float = 10.0) -> str:
        """Read until a stream error; return its condition and check the stream then ends."""
        while True:
            el = await self.read(timeout)
            if el.tag == q(NS_STREAMS, "error"):
                cond = next(c.tag.split("}")[1] for c in el if c.tag.startswith(
                    "{" + NS_STREAM_ERRORS) and not c.tag.endswith("}text"))
                end = await self.read(timeout)
                assert end.tag == "__stream_end__", end.tag
                return cond

    async def eof(self, timeout: float = 10.0, close_first: bool = True) -> bool:
        """Wait for TCP close; by default answer the server's </stream> first (RFC 6120 §4.4)."""
        if close_first:
            try:
                await self.send("</stream:stream>")
            except (ConnectionError, RuntimeError):
                return True
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not data:
                    return True
        except (ConnectionError, ssl.SSLError):
            return True

    def close(self) -> None:
        self.writer.close()

    async def iq(self, body: str, type_: str = "get", to: str | None = None,
                 id_: str = "q1", timeout: float = 10.0) -> ET.Element:
        to_attr = f" to='{to}'" if to else ""
        await self.send(f"<iq type='{type_}' id='{id_}'{to_attr}>{body}</iq>")
        while True:
            el = await self.read(timeout)
            if el.tag == C + "iq" and el.get("id") == id_:
                return el


def stanza_error(el: ET.Element) -> tuple[str, str]:
    """(type, condition) of an error stanza."""
    err = el.find(C + "error")
    assert err is not None, ET.tostring(el)
    cond = next(c.tag.split("}")[1] for c in err if c.tag.startswith("{" + NS_STANZAS)
                and not c.tag.endswith("}text"))
    return err.get("type", ""), cond


def attrs(el: Any) -> dict[str, str]:
    return dict(el.attrib)
