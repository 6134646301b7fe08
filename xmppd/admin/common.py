"""What the operation definitions share: parameter shapes, nodes, messages from the server."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.ops import NS_ADMIN, NS_XMPPD, Operation, Param, Result, register

if TYPE_CHECKING:
    from xmppd.jid import JID


def admin_node(name: str) -> str:
    """XEP-0133 command node (its §4 names each one)."""
    return f"{NS_ADMIN}#{name}"


def xmppd_node(name: str) -> str:
    return f"{NS_XMPPD}#{name}"


def accountjids(label: str, kind: str = "account") -> Param:
    return Param("accountjids", "accountjids", "jid-multi", label, required=True,
                 jid=kind)  # type: ignore[arg-type]


def accountjid(label: str) -> Param:
    return Param("accountjid", "accountjid", "jid-single", label, required=True,
                 jid="account")


def text(name: str, label: str, required: bool = False) -> Param:
    return Param(name, name, "text-multi", label, required=required)


def _max_items(value: str) -> int | None:
    return None if value == "none" else int(value)


# XEP-0133 §4.18-4.22: the list forms offer these limits; "none" means every item.
MAX_ITEMS = Param("max_items", "max_items", "list-single", "Maximum number of items to show",
                  options=tuple((v if v != "none" else "None", v) for v in (
                      "25", "50", "75", "100", "150", "200", "none")), parse=_max_items)


def _delay(value: str) -> int:
    return int(value)


# XEP-0133 §4.30/4.31 offer 30 s to 5 min; 0 (at once) is added for scripts and tests.
DELAY = Param("delay", "delay", "list-single", "Time delay before shutting down",
              options=(("at once", "0"), ("30 seconds", "30"), ("60 seconds", "60"),
                       ("90 seconds", "90"), ("2 minutes", "120"), ("3 minutes", "180"),
                       ("4 minutes", "240"), ("5 minutes", "300")), parse=_delay)


def define(name: str, title: str, instructions: str, *params: Param,
           **kw: Any) -> Callable[[Callable[..., Awaitable[Result]]], Operation]:
    """Decorator: register ``run`` as the operation ``name``."""
    def wrap(run: Callable[..., Awaitable[Result]]) -> Operation:
        return register(Operation(name, title, instructions, run, tuple(params), **kw))

    return wrap


def message(domain: str, to: str, body: str, subject: str | None = None,
            type_: str | None = None) -> Element:
    """A message from the server (the domain itself) to a user."""
    m = st.make("message", st.NS_CLIENT, {"from": domain, "to": to})
    if type_:
        m.attributes["type"] = type_
    if subject:
        st.add(m, "subject", st.NS_CLIENT, subject)
    st.add(m, "body", st.NS_CLIENT, body)
    return m


def stamp(seconds: float | None) -> str:
    """XEP-0082 DateTime (what XEP-0133 §4.9 asks for lastlogin); "" for never."""
    if seconds is None:
        return ""
    return datetime.datetime.fromtimestamp(int(seconds), datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def jids(values: list[JID]) -> list[str]:
    return [str(j) for j in values]
