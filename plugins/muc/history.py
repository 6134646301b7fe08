"""Discussion history sent to a new occupant (XEP-0045 §7.2.13, §7.2.14).

The room keeps its last ``muc#maxhistoryfetch`` messages in memory (filled from the room's
archive after a restart, see mam.py). A joining client may narrow what it gets with
``<history maxchars maxstanzas seconds since/>``; the service sends "the smallest amount of
traffic that meets any combination of the above criteria", complete stanzas only, oldest
first, each stamped with a XEP-0203 delay whose 'from' is the room.

Each entry knows its XEP-0359 stanza id and its author's real bare JID, so a retracted
message leaves the history (XEP-0424 §5: "not replaying the message to new occupants").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from twisted.words.xish.domish import Element

from plugins.muc import ns
from plugins.muc.fanout import Template
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.timeutil import format_datetime, parse_datetime


@dataclass(slots=True)
class HistoryEntry:
    stamp: int  # unix microseconds when the room received the message
    template: Template  # the message as reflected, with its <delay/>, without 'to'
    base_size: int  # characters of the stanza without a 'to' attribute
    sid: str = ""  # the room's XEP-0359 stanza id of the message
    author: str = ""  # the sender's real bare JID


@dataclass(frozen=True)
class HistoryRequest:
    maxchars: int | None = None
    maxstanzas: int | None = None
    seconds: int | None = None
    since: int | None = None  # unix microseconds


def parse_request(x: Element | None) -> HistoryRequest:
    """The <history/> child of the join presence's <x xmlns='...muc'/> (absent: defaults).
    A value that is not a non-negative integer / XEP-0082 DateTime is ``bad-request``."""
    h = st.child(x, "history", ns.MUC) if x is not None else None
    if h is None:
        return HistoryRequest()
    values: dict[str, int] = {}
    for attr in ("maxchars", "maxstanzas", "seconds"):
        raw = h.getAttribute(attr)
        if raw is None:
            continue
        try:
            n = int(raw.strip())
        except ValueError:
            raise StanzaError("bad-request", text=f"history {attr} is not a number") from None
        if n < 0:
            raise StanzaError("bad-request", text=f"history {attr} is negative")
        values[attr] = n
    since = h.getAttribute("since")
    if since is not None:
        try:
            values["since"] = parse_datetime(since)
        except ValueError:
            raise StanzaError("bad-request", text="history since is not a DateTime") from None
    return HistoryRequest(**values)


def with_delay(message: Element, room: str, stamp: int) -> Element:
    """A copy of a reflected message stamped for history (XEP-0203, 'from' = the room)."""
    out = st.shallow_copy(message)
    out.children = [c for c in out.children if not (
        isinstance(c, Element) and c.name == "delay" and c.uri == st.NS_DELAY)]
    st.stamp_delay(out, room, format_datetime(stamp))
    return out


def history_entry(message: Element, room: str, stamp: int, author: str = "") -> HistoryEntry:
    """A history entry for ``message`` as the room reflected it, stamped with <delay/>."""
    sid = next((c.getAttribute("id", "") for c in st.children(message, "stanza-id", ns.SID)
                if c.getAttribute("by") == room), "")
    tpl = Template(with_delay(message, room, stamp))
    return HistoryEntry(stamp, tpl, len(st.serialize(tpl.to(""))), sid, author)


class History:
    """The last ``limit`` messages of a room."""

    def __init__(self, limit: int) -> None:
        self.entries: deque[HistoryEntry] = deque(maxlen=max(limit, 0) or None)
        self.limit = limit

    def resize(self, limit: int) -> None:
        if limit != self.limit:
            self.limit = limit
            kept = list(self.entries)[-limit:] if limit else []
            self.entries = deque(kept, maxlen=limit or None)

    def add(self, message: Element, room: str, stamp: int, author: str = "") -> None:
        if self.limit <= 0:
            return
        self.entries.append(history_entry(message, room, stamp, author))

    def find(self, sid: str) -> HistoryEntry | None:
        return next((e for e in self.entries if e.sid == sid), None)

    def drop(self, sid: str) -> bool:
        """Forget the message with this stanza id (retracted); True if it was here."""
        entry = self.find(sid)
        if entry is not None:
            self.entries.remove(entry)
        return entry is not None

    def replace(self, entries: Iterable[HistoryEntry]) -> None:
        self.entries = deque(entries, maxlen=self.limit or None)

    def select(self, req: HistoryRequest, now: int, to: str) -> list[Element]:
        """The history for one recipient, oldest first (§7.2.14)."""
        return [e.template.to(to) for e in select(list(self.entries), req, now, to)]


def select(entries: list[HistoryEntry], req: HistoryRequest, now: int,
           to: str) -> list[HistoryEntry]:
    """Newest-first walk that stops at the first limit reached; complete stanzas only."""
    if req.maxchars == 0 or req.maxstanzas == 0:
        return []
    oldest = None
    if req.seconds is not None:
        oldest = now - req.seconds * 1_000_000
    if req.since is not None:
        oldest = req.since if oldest is None else max(oldest, req.since)
    extra = len(f' to="{st.escape_attr(to)}"') - len(' to=""')
    chosen: list[HistoryEntry] = []
    chars = 0
    for e in reversed(entries):
        if oldest is not None and e.stamp < oldest:
            break
        if req.maxstanzas is not None and len(chosen) >= req.maxstanzas:
            break
        size = e.base_size + extra
        if req.maxchars is not None and chars + size > req.maxchars:
            break
        chars += size
        chosen.append(e)
    chosen.reverse()
    return chosen
