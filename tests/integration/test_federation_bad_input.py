"""Misbehaving peers on the s2s port get the stream error RFC 6120 §4.9 / XEP-0220 name,
logged with their address, while a real federated conversation carries on unaffected."""

from __future__ import annotations

import asyncio
import base64
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_federation import A, B, Pair, free_port, make_server
from tests.support.backends import database
from tests.support.ca import CertAuthority
from tests.support.client import Client, connect, run, wait_for
from tests.support.raw import NS_SASL, NS_STREAMS, NS_TLS, RawStream, q
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
NS_DB = "jabber:server:dialback"
S = "{jabber:server}"


class S2SRaw(RawStream):
    """A hand-driven peer server."""

    async def open_stream(self, to: str = A, version: str = "1.0",  # type: ignore[override]
                          raw: str | None = None, frm: str = B) -> ET.Element:
        self._new_parser()
        self.header = None
        await self.send(raw if raw is not None else (
            f"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
            f"xmlns:stream='{NS_STREAMS}' xmlns:db='{NS_DB}' to='{to}' from='{frm}' "
            f"version='{version}'>"))
        return await self.read()

    async def tls(self, ca: CertAuthority, tmp: Path, as_domain: str = B) -> None:
        await self.send(f"<starttls xmlns='{NS_TLS}'/>")
        el = await self.read()
        assert el.tag == q(NS_TLS, "proceed"), el.tag
        ctx = ssl.create_default_context(cafile=str(ca.ca_file))
        crt, key = ca.issue(as_domain, tmp / f"client-{as_domain}")
        ctx.load_cert_chain(str(crt), str(key))
        await self.writer.start_tls(ctx, server_hostname=A)

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.local_port: int = writer.get_extra_info("sockname")[1]


@pytest.fixture(scope="module")
def pair(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """a.test trusts the test CA (so a peer can prove b.test with SASL EXTERNAL) but does
    not require valid certificates (so dialback is offered too); b.test is a real peer."""
    tmp = tmp_path_factory.mktemp("fed-bad")
    pa, pb = free_port(), free_port()
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    with database("sqlite", tmp / "a") as ua, database("sqlite", tmp / "b") as ub:
        a = make_server(tmp / "a", ca, A, pa, B, pb, ua, ca_file=str(ca.ca_file))
        b = make_server(tmp / "b", ca, B, pb, A, pa, ub)
        a.start()
        b.start()
        try:
            yield Pair(a, b)
        finally:
            for s in (a, b):
                assert s.stop() == 0
                assert not s.tracebacks(), s.tracebacks()


async def conversation(pair: Pair) -> tuple[Client, Client]:
    alice, _ = pair.a.new_user("alice", A)
    bob, _ = pair.b.new_user("bob", B)
    ca_ = await connect(pair.a, alice + "/x")
    cb = await connect(pair.b, bob + "/x")
    await exchange(ca_, cb, "hello")
    return ca_, cb


async def exchange(ca_: Client, cb: Client, text: str) -> None:
    ca_.send_message(mto=cb.boundjid.bare, mbody=f"{text} from a", mtype="chat")
    cb.send_message(mto=ca_.boundjid.bare, mbody=f"{text} from b", mtype="chat")
    assert (await cb.next_message(timeout=15))["body"] == f"{text} from a"
    assert (await ca_.next_message(timeout=15))["body"] == f"{text} from b"


def logged(pair: Pair, condition: str, port: int) -> bool:
    return f"stream error {condition} to 127.0.0.1:{port}" in pair.a.log()


async def authenticated_peer(pair: Pair | ServerProcess, tmp: Path) -> S2SRaw:
    """A raw peer that proved b.test to a.test with its certificate (XEP-0178)."""
    a = pair.a if isinstance(pair, Pair) else pair
    raw = await S2SRaw.open(a.ports["s2s"][0])
    await raw.open_stream()
    await raw.tls(a.ca, tmp)
    features = await raw.open_stream()
    mechs = [m.text for m in features.iter(q(NS_SASL, "mechanism"))]
    assert mechs == ["EXTERNAL"], ET.tostring(features)
    authzid = base64.b64encode(B.encode()).decode()
    await raw.send(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{authzid}</auth>")
    assert (await raw.read()).tag == q(NS_SASL, "success")
    await raw.open_stream()
    return raw


def test_bad_peers_get_stream_errors_and_others_carry_on(pair: Pair, tmp_path: Path) -> None:
    async def body() -> None:
        ca_, cb = await conversation(pair)

        # 1. A stanza before any authentication -> <not-authorized/> (RFC 6120 §4.9.3.12)
        raw = await S2SRaw.open(pair.a.ports["s2s"][0])
        features = await raw.open_stream()
        assert features.find(f"{q(NS_TLS, 'starttls')}/{q(NS_TLS, 'required')}") is not None
        await raw.send(f"<message from='bob@{B}' to='{ca_.boundjid.bare}'><body>x</body>"
                       "</message>")
        assert await raw.stream_error() == "not-authorized"
        assert logged(pair, "not-authorized", raw.local_port)
        raw.close()
        # ... also after TLS, with the certificate not yet used for anything
        raw = await S2SRaw.open(pair.a.ports["s2s"][0])
        await raw.open_stream()
        await raw.tls(pair.a.ca, tmp_path)
        await raw.open_stream()
        await raw.send(f"<message from='bob@{B}' to='{ca_.boundjid.bare}'><body>x</body>"
                       "</message>")
        assert await raw.stream_error() == "not-authorized"
        raw.close()

        # 2. A spoofed 'from' on an authenticated stream -> <invalid-from/> (§4.9.3.9)
        raw = await authenticated_peer(pair, tmp_path)
        await raw.send(f"<message from='bob@{B}' to='{ca_.boundjid.bare}' type='chat'>"
                       "<body>genuine</body></message>")
        got = await ca_.next_message(timeout=15)
        assert got["body"] == "genuine" and got["from"].bare == f"bob@{B}"
        await raw.send(f"<message from='mallory@evil.test' to='{ca_.boundjid.bare}'>"
                       "<body>spoofed</body></message>")
        assert await raw.stream_error() == "invalid-from"
        assert logged(pair, "invalid-from", raw.local_port)
        raw.close()
        # missing addresses -> <improper-addressing/> (§4.9.3.7)
        raw = await authenticated_peer(pair, tmp_path)
        await raw.send("<message><body>nowhere</body></message>")
        assert await raw.stream_error() == "improper-addressing"
        raw.close()
        # SASL EXTERNAL for a domain the certificate does not name -> failure, closed
        raw = await S2SRaw.open(pair.a.ports["s2s"][0])
        await raw.open_stream(frm="evil.test")
        await raw.tls(pair.a.ca, tmp_path, as_domain="b.test")
        features = await raw.open_stream(frm="evil.test")
        assert features.find(q(NS_SASL, "mechanisms")) is None  # not offered for evil.test
        raw.close()

        # 3. A stream 'to' this server does not serve -> <host-unknown/> (§4.9.3.6)
        raw = await S2SRaw.open(pair.a.ports["s2s"][0])
        await raw.send(f"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                       f"xmlns:stream='{NS_STREAMS}' to='c.test' from='{B}' version='1.0'>")
        assert await raw.stream_error() == "host-unknown"
        assert logged(pair, "host-unknown", raw.local_port)
        raw.close()
        # ... or a different one after the TLS restart
        raw = await S2SRaw.open(pair.a.ports["s2s"][0])
        await raw.open_stream()
        await raw.tls(pair.a.ca, tmp_path)
        await raw.send(f"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                       f"xmlns:stream='{NS_STREAMS}' to='{B}' from='{B}' version='1.0'>")
        assert await raw.stream_error() == "host-unknown"
        raw.close()
        # a client namespace on the server port -> <invalid-namespace/> (§4.9.3.10)
        raw = await S2SRaw.open(pair.a.ports["s2s"][0])
        await raw.send(f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                       f"xmlns:stream='{NS_STREAMS}' to='{A}' version='1.0'>")
        assert await raw.stream_error() == "invalid-namespace"
        raw.close()

        # 4. An invalid dialback key: a.test asks b.test (the Authoritative Server), which
        # says invalid -> <db:result type='invalid'/> and the stream is closed (XEP-0220
        # §2.2.1) with <not-authorized/>.
        raw = await S2SRaw.open(pair.a.ports["s2s"][0])
        await raw.open_stream()
        await raw.tls(pair.a.ca, tmp_path, as_domain="evil.test")  # names nothing useful
        features = await raw.open_stream()
        assert features.find("{urn:xmpp:features:dialback}dialback") is not None
        await raw.send(f"<db:result from='{B}' to='{A}'>{'0' * 64}</db:result>")
        res = await raw.read(timeout=20)
        assert res.tag == f"{{{NS_DB}}}result" and res.get("type") == "invalid", \
            ET.tostring(res)
        assert await raw.stream_error() == "not-authorized"
        assert logged(pair, "not-authorized", raw.local_port)
        assert "invalid dialback key from 127.0.0.1:" in pair.a.log()
        raw.close()
        # a dialback key for a domain a.test does not serve -> dialback error, stream stays
        raw = await S2SRaw.open(pair.a.ports["s2s"][0])
        await raw.open_stream()
        await raw.tls(pair.a.ca, tmp_path, as_domain="evil.test")
        await raw.open_stream()
        await raw.send(f"<db:result from='{B}' to='c.test'>{'0' * 64}</db:result>")
        res = await raw.read()
        assert res.get("type") == "error" and res.find(
            f"{S}error/{{urn:ietf:params:xml:ns:xmpp-stanzas}}item-not-found") is not None
        # unsolicited answers are ignored; the stream is still usable for dialback
        await raw.send(f"<db:verify from='{B}' to='{A}' id='x' type='valid'/>")
        await raw.send(f"<db:verify from='{B}' to='{A}' id='abc'>{'1' * 64}</db:verify>")
        res = await raw.read()
        assert res.tag == f"{{{NS_DB}}}verify" and res.get("type") == "invalid"
        raw.close()

        # Meanwhile the real federation between a.test and b.test never noticed.
        await exchange(ca_, cb, "still here")
        await ca_.close()
        await cb.close()

    run(body(), timeout=120)


def test_remote_users_cannot_use_in_band_registration(pair: Pair, tmp_path: Path) -> None:
    """A user of another server has no account here: XEP-0077 cancellation and password
    change from over federation get <forbidden/> (§3.2 table). Found by tests/fuzz: the
    cancellation went on to delete the account of the remote JID, which raised (a traceback
    and an internal-server-error reply)."""
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath

    async def body() -> None:
        ca_, cb = await conversation(pair)
        answers: asyncio.Queue[Any] = asyncio.Queue()
        cb.register_handler(Callback("register answers", MatchXPath("{jabber:client}iq"),
                                     answers.put_nowait))
        raw = await authenticated_peer(pair, tmp_path)
        for i, payload in enumerate(("<remove/>", "<username>bob</username>"
                                     "<password>new</password>")):
            # From bob's real session on b.test: a.test's answer reaches him over b.test.
            await raw.send(f"<iq type='set' id='reg{i}' from='{cb.boundjid}' to='{A}'>"
                           f"<query xmlns='jabber:iq:register'>{payload}</query></iq>")
            got = await asyncio.wait_for(answers.get(), 15)
            assert got["id"] == f"reg{i}" and got["type"] == "error", got
            assert got["error"]["condition"] == "forbidden", got
        raw.close()
        assert "Traceback" not in pair.a.log()
        await exchange(ca_, cb, "still registered")
        await ca_.close()
        await cb.close()

    run(body(), timeout=120)


def test_error_replies_to_an_unreachable_peer_are_dropped_quietly(
        ca: CertAuthority, tmp_path: Path) -> None:
    """b.test reaches a.test but a.test cannot reach b.test. A stanza from b.test that a.test
    must refuse gets an error reply, which cannot be delivered: while the route is in
    back-off, sending it raises remote-server-not-found at once. An error is never answered
    with an error (RFC 6120 §8.3.1), so the reply is dropped with a line in the log. Found
    by tests/fuzz: it was logged as a failure, with a traceback."""
    with database("sqlite", tmp_path / "db") as url:
        a = make_server(tmp_path, ca, A, free_port(), B, free_port(), url,
                        ca_file=str(ca.ca_file))  # nothing listens on b.test's port
        a.start()
        try:
            async def body() -> None:
                raw = await authenticated_peer(a, tmp_path)
                ping = ("<iq type='get' id='{}' from='bob@{}/x' to='nobody@{}'>"
                        "<ping xmlns='urn:xmpp:ping'/></iq>")
                await raw.send(ping.format("p1", B, A))  # the first reply tries to connect
                await wait_for(lambda: f"federation {A} -> {B} failed" in a.log(), 30)
                await raw.send(ping.format("p2", B, A))  # the next meets the back-off
                # Barrier: elements of one stream are handled in order (RFC 6120 §10.1).
                await raw.send(f"<db:verify from='{B}' to='{A}' id='x'>{'1' * 64}</db:verify>")
                res = await raw.read()
                assert res.tag == f"{{{NS_DB}}}verify" and res.get("type") == "invalid"
                assert f"error reply <iq type=error from=nobody@{A} to=bob@{B}/x id=p2> not " \
                    "delivered: remote-server-" in a.log()
                raw.close()

            run(body(), timeout=120)
        finally:
            assert a.stop() == 0
        assert not a.tracebacks(), a.tracebacks()
