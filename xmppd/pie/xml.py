"""Small helpers shared by the import and export sides: exact time stamps, JID checks with
error locations, and the indented writer of export files."""

from __future__ import annotations

import datetime
from typing import IO, Final

from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.jid import JID, JIDError
from xmppd.pie.model import PieError, Where
from xmppd.timeutil import parse_datetime

_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def stamp(micros: int) -> str:
    """Unix microseconds as a XEP-0082 DateTime with microseconds, computed exactly (integer
    arithmetic), so that export -> import -> export gives the same text."""
    dt = _EPOCH + datetime.timedelta(microseconds=micros)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_stamp(value: str | None, where: Where, what: str) -> int:
    if not value:
        raise PieError(where, f"{what}: no time stamp")
    try:
        return parse_datetime(value)
    except ValueError:
        raise PieError(where, f"{what}: {value!r} is not a XEP-0082 DateTime") from None


def attr(el: Element, name: str) -> str | None:
    value = el.attributes.get(name)
    return value if isinstance(value, str) else None


def required(el: Element, name: str, where: Where) -> str:
    value = attr(el, name)
    if not value:
        raise PieError(where, f"<{el.name}/> without its '{name}' attribute")
    return value


def jid(value: str | None, where: Where, what: str, bare: bool = False,
        limit: int = 255) -> JID:
    """A prepared JID (RFC 7622) or a PieError naming ``what`` was wrong."""
    if not value:
        raise PieError(where, f"{what}: no JID")
    try:
        j = JID.parse(value)
    except JIDError as exc:
        raise PieError(where, f"{what}: invalid JID {value!r} ({exc})") from None
    if bare and j.resource:
        raise PieError(where, f"{what}: {value!r} must be a bare JID")
    if len(str(j)) > limit:
        raise PieError(where, f"{what}: {value!r} is longer than {limit} characters")
    return j


def text_of(el: Element) -> str:
    return st.text(el)


class Writer:
    """Writes an export: container tags opened and closed by hand, every element inside them
    serialized whole with its namespace declared (it can be read without its context)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.depth = 0

    def open(self, name: str, attrs: dict[str, str] | None = None, ns: str | None = None
             ) -> None:
        parts = [f"<{name}"]
        if ns is not None:
            parts.append(f' xmlns="{st.escape_attr(ns)}"')
        for k, v in (attrs or {}).items():
            parts.append(f' {k}="{st.escape_attr(v)}"')
        self.out.write("  " * self.depth + "".join(parts) + ">\n")
        self.depth += 1

    def close(self, name: str) -> None:
        self.depth -= 1
        self.out.write("  " * self.depth + f"</{name}>\n")

    def element(self, el: Element) -> None:
        self.out.write("  " * self.depth + st.serialize(el, explicit_ns=True) + "\n")
