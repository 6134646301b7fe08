"""XEP-0206 §7: stanzas a BOSH session never delivered are not lost when it ends.

A message goes to offline storage (the MESSAGE_UNDELIVERED hook, else back to its sender as
recipient-unavailable), an IQ request gets service-unavailable, presence is dropped.
Messages the server wrote on the user's own behalf (archive results, carbons: from the bare
JID) and groupchat, headline and error messages are not kept, as for XEP-0198 (plugins/
smacks.py). XEP-0198 itself is not offered over BOSH, so nothing is handed back twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.words.xish.domish import Element

from xmppd import hooks as H
from xmppd.context import ServerContext
from xmppd.errors import StanzaError, StreamError
from xmppd.jid import JID, JIDError
from xmppd.logs import Logger
from xmppd.xmlparser import parse_fragment

if TYPE_CHECKING:
    from xmppd.bosh.stream import BoshC2S

log = Logger(namespace="xmppd.bosh.handback")


async def hand_back(server: ServerContext, c2s: BoshC2S, undelivered: list[bytes]) -> None:
    """``undelivered``: stanzas as the session serialized them for its client."""
    host = server.hosts.get(c2s.host)
    user = c2s.jid.bare_str if c2s.jid is not None else ""
    for data in undelivered:
        try:
            stanza = parse_fragment(data.decode())
        except (ValueError, StreamError):
            continue
        try:
            await _one(server, stanza, user, host)
        except Exception:
            log.failure("handing back an undelivered stanza")


async def _one(server: ServerContext, stanza: Element, user: str, host: Any) -> None:
    frm, kind = stanza.getAttribute("from") or "", stanza.getAttribute("type")
    if stanza.name == "message" and host is not None and frm and frm != user and (
            kind not in ("error", "groupchat", "headline")):
        try:
            sender, rcpt = JID.parse(frm), JID.parse(stanza.getAttribute("to") or "")
        except JIDError:
            return
        if await host.fire(H.MESSAGE_UNDELIVERED,
                           H.StanzaEvent(stanza, sender, rcpt.bare, None)):
            return
        await server.router.bounce(stanza, StanzaError("recipient-unavailable"))
    elif stanza.name == "iq" and kind in ("get", "set"):
        await server.router.bounce(stanza, StanzaError("service-unavailable"))
