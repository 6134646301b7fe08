"""A request as a BOSH session sees it, the HTTP exchange it waits on, the session's terms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from twisted.internet.interfaces import IDelayedCall
from twisted.words.xish.domish import Element

from xmppd.bosh import wire

if TYPE_CHECKING:
    from xmppd.bosh.session import BoshSession


class Exchange(Protocol):
    """One HTTP request waiting for its response (xmppd.bosh.http.HttpExchange)."""

    alive: bool
    on_lost: Callable[[Exchange], None] | None

    def respond(self, body: bytes, content_type: str = wire.CONTENT_TYPE,
                status: int = 200) -> None: ...


class Service(Protocol):
    """The resource that keeps the sessions by sid."""

    def forget(self, session: BoshSession) -> None: ...


@dataclass(frozen=True)
class Terms:
    """What the session creation response announced (§7.2)."""

    wait: int
    hold: int
    requests: int
    inactivity: int
    polling: int
    maxpause: int


@dataclass(eq=False)
class Request:
    """One request of a session (XEP-0124 §8), from its arrival to its answer."""

    rid: int
    exchange: Exchange | None  # None once its HTTP connection is gone
    body: Element
    size: int  # bytes of the HTTP body
    arrived: float
    creation: bool = False
    pause: int | None = None
    empty: bool = False  # an empty poll, for the overactivity rules
    terminate: bool = False
    delivered: bool = False  # its response carried payloads
    timer: IDelayedCall | None = None
