"""Named, typed hooks and the bus that fires them; the catalogue of the core's hooks lives
here (a plugin declares its own hooks in its module and lists them in ``Plugin.hooks``).

A handler returns True to consume the event (later handlers do not run). StanzaError
propagates to the router boundary; any other exception is logged and the next handler runs,
so one broken plugin cannot take a stanza down with it.

A ``Hook`` is fired with ``await fire()`` and its handlers may be coroutines. A ``SyncHook``
is fired on a path that must not wait (writing to a stream, building features) with
``fire_sync()``; its handler type excludes awaitables, so mypy rejects a coroutine
registered on it (and the bus raises TypeError should one slip through untyped code).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from twisted.words.xish.domish import Element

from xmppd.errors import StanzaError
from xmppd.jid import JID
from xmppd.logs import Logger

if TYPE_CHECKING:
    from xmppd.sessions import Session

E = TypeVar("E")
HandlerResult = bool | None | Awaitable[bool | None]
Handler = Callable[[E], HandlerResult]
SyncHandler = Callable[[E], bool | None]

log = Logger(namespace="xmppd.hooks")


class BaseHook(Generic[E]):
    """A hook declaration: a name, the event type (as the type parameter) and a docstring.
    Declare a ``Hook`` or a ``SyncHook``, never this base."""

    __slots__ = ("doc", "name")

    def __init__(self, name: str, doc: str) -> None:
        self.name = name
        self.doc = doc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class Hook(BaseHook[E]):
    """Fired with ``await HookBus.fire()``: handlers may be coroutines."""

    __slots__ = ()


class SyncHook(BaseHook[E]):
    """Fired with ``HookBus.fire_sync()`` on a path that must not wait: handlers are plain
    functions (``SyncHandler``)."""

    __slots__ = ()


class Registration:
    """Returned by HookBus.add; ``remove()`` unregisters (used on plugin unload)."""

    __slots__ = ("_bus", "_entry", "_hook")

    def __init__(self, bus: HookBus, hook: BaseHook[Any],
                 entry: tuple[int, int, Handler[Any]]) -> None:
        self._bus, self._hook, self._entry = bus, hook, entry

    def remove(self) -> None:
        handlers = self._bus._handlers.get(self._hook)
        if handlers and self._entry in handlers:
            handlers.remove(self._entry)
            self._bus._rebuild(self._hook)


class HookBus:
    def __init__(self) -> None:
        self._handlers: dict[BaseHook[Any], list[tuple[int, int, Handler[Any]]]] = {}
        self._ordered: dict[BaseHook[Any], tuple[Handler[Any], ...]] = {}
        self._seq = 0

    @overload
    def add(self, hook: SyncHook[E], handler: SyncHandler[E], priority: int = 0) -> Registration:
        ...

    @overload
    def add(self, hook: Hook[E], handler: Handler[E], priority: int = 0) -> Registration: ...

    def add(self, hook: BaseHook[E], handler: Handler[E], priority: int = 0) -> Registration:
        """Register ``handler``; higher priority runs first, ties in registration order."""
        self._seq += 1
        entry = (-priority, self._seq, handler)
        self._handlers.setdefault(hook, []).append(entry)
        self._rebuild(hook)
        return Registration(self, hook, entry)

    def _rebuild(self, hook: BaseHook[Any]) -> None:
        entries = sorted(self._handlers.get(hook, ()), key=lambda e: (e[0], e[1]))
        if entries:
            self._ordered[hook] = tuple(e[2] for e in entries)
        else:
            self._ordered.pop(hook, None)

    def has(self, hook: BaseHook[Any]) -> bool:
        return hook in self._ordered

    async def fire(self, hook: Hook[E], event: E) -> bool:
        """Run handlers in order; True as soon as one consumes the event."""
        handlers = self._ordered.get(hook)
        if not handlers:
            return False
        for handler in handlers:
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    result = await result
            except StanzaError:
                raise
            except Exception:
                log.failure("hook {hook} handler {handler!r} failed", hook=hook.name,
                            handler=handler)
                continue
            if result:
                return True
        return False

    def fire_sync(self, hook: SyncHook[E], event: E) -> bool:
        """For hooks on the write path whose handlers must not wait (declared SyncHook)."""
        handlers = self._ordered.get(hook)
        if not handlers:
            return False
        for handler in handlers:
            try:
                result = handler(event)
            except Exception:
                log.failure("hook {hook} handler {handler!r} failed", hook=hook.name,
                            handler=handler)
                continue
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                raise TypeError(f"handler for sync hook {hook.name} returned an awaitable")
            if result:
                return True
        return False


# --- events ------------------------------------------------------------------------------------

@dataclass(slots=True)
class StanzaEvent:
    """A stanza on its way through the router. ``origin`` is the session it came from (or
    None when the server itself sent it); ``from_``/``to`` are prepared JIDs."""

    stanza: Element
    from_: JID
    to: JID
    origin: Session | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SessionEvent:
    session: Session
    stanza: Element | None = None
    reason: str = ""


@dataclass(slots=True)
class FeaturesEvent:
    """Stream features being offered; handlers append children to ``features``."""

    session: Session
    features: Element
    stage: str  # "pre-tls", "pre-auth", "post-auth" (RFC 6120 §4.3.2)


@dataclass(slots=True)
class Sasl2FeaturesEvent:
    """SASL2's <authentication/> feature being offered (XEP-0388): plugins that can act
    inline append to ``inline`` (e.g. XEP-0198 <sm/>) or to Bind 2's ``bind_inline``
    (<feature var=''/>, XEP-0386 §3.1)."""

    session: Session
    inline: Element
    bind_inline: Element


@dataclass(slots=True)
class InlineEvent:
    """An inline request of a successful SASL2 authentication: ``request`` is the client's
    <authenticate/> (SASL2_SUCCESS) or its Bind 2 <bind/> (BIND2_REQUEST); handlers act on
    the children in their namespace and append their answers to ``response`` (<success/>
    or <bound/>); ``after`` holds what must happen once <success/> is written (stanzas a
    resumed stream sends again)."""

    session: Session
    request: Element
    response: Element
    after: list[Callable[[], None]] = field(default_factory=list)


@dataclass(slots=True)
class NonzaEvent:
    """A top-level element that is not a stanza (XEP-0198 <r/>, XEP-0352 <active/> ...)."""

    session: Session
    element: Element


@dataclass(slots=True)
class DeliverEvent:
    """A stanza about to be written to a session; a True handler holds it back (it owns it)."""

    session: Session
    stanza: Element


@dataclass(slots=True)
class AccountEvent:
    jid: JID


@dataclass(slots=True)
class HibernationEvent:
    """A session kept bound after its connection dropped (XEP-0198 §5): ``unacked`` are the
    stanzas written to it that the client never acknowledged (they are sent again on
    resumption)."""

    session: Session
    unacked: list[Element]


# --- catalogue --------------------------------------------------------------------------------

STANZA_OUTBOUND: Hook[StanzaEvent] = Hook(
    "stanza-outbound",
    "Fired by the router for every stanza a local session sends, after `from` is stamped and "
    "`to` prepared, before a target is chosen. True = consumed (e.g. blocked, rate limited).",
)
STANZA_INBOUND: Hook[StanzaEvent] = Hook(
    "stanza-inbound",
    "Fired for every stanza addressed to a local account (bare or full JID), from any origin, "
    "before delivery. True = consumed (blocked, handled on the user's behalf).",
)
PRESENCE_BROADCAST: Hook[StanzaEvent] = Hook(
    "presence-broadcast",
    "A local session sent presence with no `to` (RFC 6121 §4.2, §4.4); the session manager has "
    "already updated the session's availability. The presence plugin broadcasts and probes.",
)
PRESENCE_INBOUND: Hook[StanzaEvent] = Hook(
    "presence-inbound",
    "Presence addressed to a local account. True = handled (subscription state machine, "
    "probes); otherwise the session manager delivers it per RFC 6121 §8.5.",
)
MESSAGE_DELIVERED: Hook[StanzaEvent] = Hook(
    "message-delivered",
    "A message was handed to one or more local sessions (`extra['sessions']`). Carbons use it.",
)
MESSAGE_UNDELIVERED: Hook[StanzaEvent] = Hook(
    "message-undelivered",
    "No session can take this message (RFC 6121 §8.5.2.2). A handler that stores it must commit "
    "before returning True; if nobody does, the sender gets service-unavailable.",
)
MESSAGE_STORED_OFFLINE: Hook[StanzaEvent] = Hook(
    "message-stored-offline",
    "The offline plugin committed this message to the queue of `to` (XEP-0160), after "
    "MESSAGE_UNDELIVERED. Push notifications (XEP-0357) start here. The result is ignored.",
)
PRESENCE_ROUTE: SyncHook[StanzaEvent] = SyncHook(
    "presence-route",
    "SYNC. The server is about to send presence on a local user's behalf (broadcast, probe "
    "answer, approval, unavailable): `from_` is the user, `to` the target. True = suppress "
    "(e.g. the user blocked the target, XEP-0191).",
)
SERVER_STANZA: Hook[StanzaEvent] = Hook(
    "server-stanza",
    "A message or presence addressed to a served domain itself. True = handled.",
)
SESSION_BOUND: Hook[SessionEvent] = Hook(
    "session-bound", "A c2s session bound a resource (RFC 6120 §7).")
SESSION_AVAILABLE: Hook[SessionEvent] = Hook(
    "session-available",
    "A session sent its initial available presence with non-negative priority (offline "
    "messages are flushed here, XEP-0160).",
)
SESSION_CLOSED: Hook[SessionEvent] = Hook(
    "session-closed",
    "A bound session ended for any reason; `reason` says why. Presence sends unavailable.",
)
REMOTE_SESSION_ENDED: Hook[SessionEvent] = Hook(
    "remote-session-ended",
    "Cluster: a resource bound on another node ended (its node ran SESSION_CLOSED). State "
    "kept here about that resource (room occupancy) is dropped.",
)
CLUSTER_CHANGED: Hook[None] = Hook(
    "cluster-changed",
    "Cluster: a node joined or went away, so entities placed by rendezvous hashing (rooms) may "
    "have moved here; state loaded earlier may be stale.",
)
SESSION_INTERRUPTED: SyncHook[SessionEvent] = SyncHook(
    "session-interrupted",
    "SYNC. A bound c2s connection dropped without a clean stream close. True = a handler keeps "
    "the session bound (XEP-0198 hibernation) and ends it later with Host.end_session().",
)
SESSION_HIBERNATED: SyncHook[HibernationEvent] = SyncHook(
    "session-hibernated",
    "SYNC. Stream management keeps a session whose connection dropped, waiting for it to be "
    "resumed (XEP-0198 §5). What is sent to it meanwhile is queued (STANZA_DELIVER still "
    "fires); it ends with SESSION_CLOSED or comes back with SESSION_RESUMED.",
)
SESSION_RESUMED: SyncHook[SessionEvent] = SyncHook(
    "session-resumed",
    "SYNC. A new stream resumed a hibernating session (XEP-0198 §5); `session` is that stream, "
    "already bound in the old one's place with the same `data`.",
)
STREAM_FEATURES: SyncHook[FeaturesEvent] = SyncHook(
    "stream-features", "Building <stream:features/> for a c2s stream at the given stage. "
    "Sync: handlers append children and must not wait.")
C2S_NONZA: Hook[NonzaEvent] = Hook(
    "c2s-nonza",
    "A non-stanza top-level element on an authenticated c2s stream. True = understood; "
    "otherwise the stream fails with unsupported-stanza-type.",
)
STANZA_DELIVER: SyncHook[DeliverEvent] = SyncHook(
    "stanza-deliver",
    "SYNC. A stanza is about to be written to a c2s session (stream management counts it, "
    "client state indication may hold it). True = held back by the handler.",
)
ACCOUNT_DELETED: Hook[AccountEvent] = Hook(
    "account-deleted", "An account was deleted; plugins remove every bit of its data.")
ACCOUNT_CREATED: Hook[AccountEvent] = Hook(
    "account-created",
    "An account was created (in-band registration, an administrator) and committed; the "
    "admin plugin sends the welcome message (XEP-0133 §4.27).")
SERVER_STARTED: Hook[None] = Hook("server-started", "All listeners are up.")
SASL2_FEATURES: SyncHook[Sasl2FeaturesEvent] = SyncHook(
    "sasl2-features", "Building SASL2's <authentication/> feature (XEP-0388, XEP-0386). Sync: "
    "handlers append what they can do inline and must not wait.")
SASL2_SUCCESS: Hook[InlineEvent] = Hook(
    "sasl2-success",
    "A SASL2 authentication succeeded, before Bind 2 (XEP-0386 §3.2: a <resume/> is processed "
    "first; a session that resumed has its JID afterwards and is not bound again). Handlers "
    "return False so that every one sees the request.")
BIND2_REQUEST: Hook[InlineEvent] = Hook(
    "bind2-request",
    "A Bind 2 request, just before the resource is bound (nothing can be routed to the "
    "session yet): handlers enable what the <bind/> asks for in their namespace and add "
    "their answers (and e.g. XEP-0313 metadata) to <bound/>. Return False.")
SERVER_STOPPING: Hook[None] = Hook(
    "server-stopping", "Shutdown began; streams are still open. Flush what must be kept.")

CATALOGUE: tuple[BaseHook[Any], ...] = (
    STANZA_OUTBOUND, STANZA_INBOUND, PRESENCE_BROADCAST, PRESENCE_INBOUND, PRESENCE_ROUTE,
    MESSAGE_DELIVERED,
    MESSAGE_UNDELIVERED, MESSAGE_STORED_OFFLINE, SERVER_STANZA, SESSION_BOUND,
    SESSION_AVAILABLE, SESSION_CLOSED, REMOTE_SESSION_ENDED, CLUSTER_CHANGED,
    SESSION_INTERRUPTED, SESSION_HIBERNATED, SESSION_RESUMED, STREAM_FEATURES, C2S_NONZA,
    STANZA_DELIVER, ACCOUNT_DELETED, ACCOUNT_CREATED, SERVER_STARTED, SERVER_STOPPING,
    SASL2_FEATURES, SASL2_SUCCESS, BIND2_REQUEST,
)
