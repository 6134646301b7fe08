"""Helpers shared by the MUC integration tests (tests/integration/test_muc_*.py); no tests.

Clients are slixmpp clients with the XEP-0045 plugin; stanzas are checked as XML so that
status codes and attributes are asserted exactly as the server wrote them.
"""

from __future__ import annotations

import asyncio
import secrets
import xml.etree.ElementTree as ET
from typing import Any

from slixmpp import JID
from slixmpp.exceptions import IqError
from slixmpp.stanza import Iq, Message, Presence
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.support.barrier import barrier
from tests.support.client import Client, connect
from tests.support.server import ServerProcess

SERVICE = "conference.localhost"
MUC = "http://jabber.org/protocol/muc"
USER = "http://jabber.org/protocol/muc#user"
ADMIN = "http://jabber.org/protocol/muc#admin"
OWNER = "http://jabber.org/protocol/muc#owner"
DATA = "jabber:x:data"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
C = "{jabber:client}"
PLUGINS = ("xep_0045", "xep_0004", "xep_0249", "xep_0203")


def new_room(prefix: str = "room") -> str:
    return f"{prefix}{secrets.token_hex(4)}@{SERVICE}"


def messages(c: Client) -> asyncio.Queue[Message]:
    """Every message a client receives (slixmpp's "message" event only covers those with a
    body; room subjects, invitations and status messages have none)."""
    q: asyncio.Queue[Message] | None = getattr(c, "all_messages", None)
    if q is None:
        q = asyncio.Queue()
        c.all_messages = q  # type: ignore[attr-defined]
        c.register_handler(Callback("all messages", MatchXPath("{jabber:client}message"),
                                    q.put_nowait))
    return q


async def user(server: ServerProcess, prefix: str, resource: str = "r",
               jid: str | None = None) -> Client:
    if jid is None:
        jid, _ = server.new_user(prefix)
    c = await connect(server, f"{jid}/{resource}", plugins=PLUGINS)
    messages(c)
    return c


async def users(server: ServerProcess, n: int, prefix: str = "u") -> list[Client]:
    return [await user(server, f"{prefix}{i}") for i in range(n)]


async def next_message(c: Client, timeout: float = 10.0, where: Any = None) -> Message:
    q = messages(c)
    while True:
        m = await asyncio.wait_for(q.get(), timeout)
        if where is None or where(m):
            return m


async def close(*clients: Client) -> None:
    """One after the other, each going unavailable first and waiting (a barrier) until the
    server has handled that: the presence plugin stores each user's last presence when it
    goes offline, and on MariaDB concurrent first writes of that (storage/kv.py: update,
    then insert) can deadlock. Then the close itself writes nothing more."""
    for c in clients:
        if c.is_connected():
            c.send_presence(ptype="unavailable")
            await barrier(c)
        await c.close()


def codes(stanza: Message | Presence | ET.Element) -> list[int]:
    el = stanza if isinstance(stanza, ET.Element) else stanza.xml
    x = el.find(f"{{{USER}}}x")
    if x is None:
        return []
    return [int(s.get("code", "0")) for s in x.findall(f"{{{USER}}}status")]


def item(stanza: Message | Presence | ET.Element) -> dict[str, str]:
    el = stanza if isinstance(stanza, ET.Element) else stanza.xml
    i = el.find(f"{{{USER}}}x/{{{USER}}}item")
    return dict(i.attrib) if i is not None else {}


def error_condition(stanza: Any) -> tuple[str, str]:
    el = stanza if isinstance(stanza, ET.Element) else stanza.xml
    err = el.find(C + "error")
    assert err is not None, ET.tostring(el)
    cond = next(c.tag.split("}")[1] for c in err if c.tag.startswith("{" + STANZAS)
                and not c.tag.endswith("}text"))
    return err.get("type", ""), cond


def drain(*clients: Client) -> None:
    for c in clients:
        for q in (c.presences, c.messages, messages(c)):
            while not q.empty():
                q.get_nowait()


def join_stanza(room: str, nick: str, inner: str = "") -> str:
    return f"<presence to='{room}/{nick}'><x xmlns='{MUC}'>{inner}</x></presence>"


async def join(c: Client, room: str, nick: str, inner: str = "",
               timeout: float = 10.0) -> Presence:
    """Send a join (raw, so the test controls the <x/>) and return the self-presence or the
    error presence; the room subject that ends the join sequence (§7.1) is awaited too."""
    c.send_raw(join_stanza(room, nick, inner))

    def mine(p: Presence) -> bool:
        return p["from"].bare == room and (p["type"] == "error" or 110 in codes(p))

    pres = await c.next_presence(timeout, mine)
    if pres["type"] != "error":
        await next_message(c, timeout, lambda m: m["from"].bare == room and m.xml.find(
            C + "subject") is not None and m.xml.find(C + "body") is None)
    return pres


async def create(c: Client, room: str, nick: str, config: dict[str, str | list[str]] | None
                 = None) -> Presence:
    """Create a room: 201, then the instant-room form (§10.1.2) or a configuration (§10.1.3)."""
    pres = await join(c, room, nick)
    assert pres["type"] != "error", pres
    assert 201 in codes(pres), codes(pres)
    await configure(c, room, config or {})
    return pres


async def configure(c: Client, room: str, config: dict[str, str | list[str]]) -> ET.Element:
    fields = "".join(
        f"<field var='{k if k.startswith(('muc#', 'FORM_TYPE')) else 'muc#roomconfig_' + k}'>"
        + "".join(f"<value>{v}</value>" for v in ([val] if isinstance(val, str) else val))
        + "</field>" for k, val in config.items())
    if fields:
        fields = (f"<field var='FORM_TYPE'><value>{MUC}#roomconfig</value></field>" + fields)
    return await iq(c, "set", room, f"<query xmlns='{OWNER}'><x xmlns='{DATA}' type='submit'>"
                                    f"{fields}</x></query>")


async def iq(c: Client, type_: str, to: str, payload: str, timeout: float = 10.0) -> ET.Element:
    """A raw IQ; the result element, or IqError."""
    req: Iq = c.make_iq(itype=type_, ito=JID(to))
    req.xml.append(ET.fromstring(payload))
    res = await req.send(timeout=timeout)
    return res.xml


async def iq_error(c: Client, type_: str, to: str, payload: str) -> tuple[str, str]:
    try:
        await iq(c, type_, to, payload)
    except IqError as exc:
        return error_condition(exc.iq)
    raise AssertionError("expected an error")


async def admin_set(c: Client, room: str, items: str) -> ET.Element:
    return await iq(c, "set", room, f"<query xmlns='{ADMIN}'>{items}</query>")


async def next_from(c: Client, frm: str, timeout: float = 10.0, kind: str = "presence",
                    where: Any = None) -> Any:
    """The next presence (or message) from an exact JID."""
    def ok(s: Any) -> bool:
        return str(s["from"]) == frm and (where is None or where(s))

    if kind == "presence":
        return await c.next_presence(timeout, ok)
    return await next_message(c, timeout, ok)


