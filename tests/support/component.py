"""A raw XEP-0114 external component over asyncio streams, for tests that need exactly the
bytes a component sends."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET

from tests.support.raw import NS_STREAMS, RawStream

NS_ACCEPT = "jabber:component:accept"
A = "{" + NS_ACCEPT + "}"


class RawComponent(RawStream):
    async def start(self, domain: str, timeout: float = 10.0) -> dict[str, str]:
        """Send the stream header for ``domain``; return the server's header attributes."""
        self._new_parser()
        self.header = None
        await self.send(f"<stream:stream xmlns='{NS_ACCEPT}' xmlns:stream='{NS_STREAMS}' "
                        f"to='{domain}'>")
        while self.header is None:
            await self._fill(timeout)
        return self.header

    async def send_handshake(self, secret: str) -> None:
        """The XEP-0114 §3 handshake: lowercase hex SHA-1 of the stream id and secret."""
        assert self.header is not None
        digest = hashlib.sha1((self.header["id"] + secret).encode()).hexdigest()
        await self.send(f"<handshake>{digest}</handshake>")

    async def handshake(self, secret: str) -> ET.Element:
        """Send the handshake; return the server's answer."""
        await self.send_handshake(secret)
        return await self.read()

    @classmethod
    async def connect(cls, port: int, domain: str, secret: str,
                      tls_ca: str | None = None) -> RawComponent:
        comp = await cls.open(port, tls_ca=tls_ca)
        await comp.start(domain)
        ok = await comp.handshake(secret)
        assert ok.tag == A + "handshake" and not ok.text and not list(ok), ET.tostring(ok)
        return comp

    async def stanza(self, name: str, timeout: float = 10.0) -> ET.Element:
        """The next stanza called ``name`` (skipping others the server sends meanwhile)."""
        return await self.read_until(lambda e: e.tag == A + name, timeout)
