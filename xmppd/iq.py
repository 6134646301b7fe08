"""The IQ registry: (scope, type, namespace, element) -> handler, plus server-originated requests.

Scope "host" is an IQ addressed to the domain itself; "account" is one addressed to a user's
bare JID (or sent with no 'to', RFC 6120 §10.3.3), which the server answers on the user's
behalf (RFC 6121 §8.5.2.1.3); "preauth" is one on a c2s stream before authentication
(XEP-0077 registration). A handler returns the result payload (or None for an empty result)
or raises StanzaError; ``IqRegistry.answer`` turns that into the reply, for every scope.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.errors import STANZA_CONDITIONS, StanzaError, error_reply, parse_error
from xmppd.jid import JID
from xmppd.logs import Logger

if TYPE_CHECKING:
    from xmppd.plugin import Host
    from xmppd.sessions import Session

Scope = Literal["host", "account", "preauth"]
IqResult = Element | None
IqHandler = Callable[["IqRequest"], Awaitable[IqResult] | IqResult]


log = Logger(namespace="xmppd.iq")

ERROR_TYPES = frozenset(("auth", "cancel", "continue", "modify", "wait"))  # RFC 6120 §8.3.2


class IqTimeout(Exception):
    pass


@dataclass(slots=True)
class IqRequest:
    stanza: Element
    payload: Element
    from_: JID | None  # None only for pre-authentication IQs (XEP-0077 registration)
    to: JID | None  # None when the client sent no 'to' (addressed to its own account)
    origin: Session | None
    host: Host

    @property
    def type(self) -> str:
        return str(self.stanza.getAttribute("type"))

    @property
    def account(self) -> JID:
        """The bare JID of the account the IQ is addressed to (own account if no 'to')."""
        if self.to is not None and self.to.local:
            return self.to.bare
        if self.from_ is None:
            raise StanzaError("not-authorized")
        return self.from_.bare

    @property
    def is_own_account(self) -> bool:
        return self.from_ is not None and (
            self.to is None or (self.to.bare == self.from_.bare))


class IqRegistry:
    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str, str | None, str], IqHandler] = {}
        self._pending: dict[str, tuple[Deferred[Element], str | None, IDelayedCall]] = {}
        self._ids = itertools.count(1)
        self.id_prefix = "xmppd"  # a cluster puts the node id in, so answers find their way

    def register(self, type_: str, ns: str, name: str, handler: IqHandler,
                 scope: Scope = "host") -> Callable[[], None]:
        if type_ not in ("get", "set"):
            raise ValueError("only get/set IQs have handlers")
        key = (scope, type_, ns, name)
        if key in self._handlers:
            raise ValueError(f"IQ handler already registered for {key}")
        self._handlers[key] = handler

        def remove() -> None:
            if self._handlers.get(key) is handler:
                del self._handlers[key]

        return remove

    def lookup(self, scope: Scope, type_: str, payload: Element) -> IqHandler | None:
        return self._handlers.get((scope, type_, payload.uri, payload.name))

    def handles_namespace(self, scope: Scope, ns: str) -> bool:
        return any(k[0] == scope and k[2] == ns for k in self._handlers)

    async def answer(self, scope: Scope, stanza: Element, from_: JID | None, to: JID | None,
                     origin: Session | None, host: Host) -> Element:
        """The reply to an IQ get/set: the one place IQ handlers run, and their one error
        boundary. The handler's result (RFC 6120 §8.2.3), or an error reply (§8.3): the
        StanzaError it raised, service-unavailable when nothing handles the payload (§8.4),
        bad-request for a malformed IQ, internal-server-error (and a log line) for any other
        exception. The caller sends the reply as it is.

        Addressing per scope: a pre-authentication answer carries neither 'from' nor 'to'
        (XEP-0077 §3.1: the entity has no address yet, and a 'from' it wrote is nobody's to
        echo back, RFC 6120 §8.1.2.1); an IQ sent without 'to' (``to`` None, RFC 6120
        §10.3.3) is answered from the sender's bare JID; otherwise the addresses are swapped."""
        try:
            payload = next((c for c in stanza.children if isinstance(c, Element)), None)
            itype = stanza.getAttribute("type")
            if payload is None or itype not in ("get", "set") or not stanza.getAttribute("id"):
                raise StanzaError("bad-request")  # RFC 6120 §8.2.3
            handler = self.lookup(scope, itype, payload)
            if handler is None:
                raise StanzaError("service-unavailable")  # RFC 6120 §8.4
            outcome = handler(IqRequest(stanza, payload, from_, to, origin, host))
            result = (outcome if outcome is None or isinstance(outcome, Element)
                      else await cast(Awaitable[IqResult], outcome))
            reply = st.result_for(stanza)
            if isinstance(result, Element):
                st.append(reply, result)
        except StanzaError as err:
            reply = error_reply(stanza, err)
        except Exception:
            log.failure("IQ handler failed on {stanza}", stanza=_brief(stanza))
            reply = error_reply(stanza, StanzaError("internal-server-error"))
        if scope == "preauth":
            reply.attributes.pop("from", None)
            reply.attributes.pop("to", None)
        elif to is None and from_ is not None:
            reply.attributes["from"] = from_.bare_str
        return reply

    # -- server-originated requests ----------------------------------------------------------
    def new_id(self) -> str:
        return f"{self.id_prefix}-{next(self._ids)}"

    def expect(self, iq: Element, timeout: float, clock: object) -> Deferred[Element]:
        """Register a pending request; the Deferred fires with the result stanza, errbacks
        with StanzaError for an error reply, or IqTimeout."""
        iq_id = iq.getAttribute("id") or self.new_id()
        iq.attributes["id"] = iq_id
        d: Deferred[Element] = Deferred()

        def expire() -> None:
            entry = self._pending.pop(iq_id, None)
            if entry is not None:
                entry[0].errback(IqTimeout(iq_id))

        call = clock.callLater(timeout, expire)  # type: ignore[attr-defined]
        self._pending[iq_id] = (d, iq.getAttribute("to"), call)
        return d

    def response(self, stanza: Element) -> bool:
        """Match a result/error to a pending request (the 'from' must be whom we asked)."""
        iq_id = stanza.getAttribute("id")
        entry = self._pending.get(iq_id) if iq_id else None
        if entry is None:
            return False
        d, asked, call = entry
        frm = stanza.getAttribute("from")
        if asked is not None and frm is not None and _norm(frm) != _norm(asked):
            return False
        del self._pending[iq_id]
        if call.active():
            call.cancel()
        if stanza.getAttribute("type") == "result":
            d.callback(stanza)
        else:
            # RFC 6120 §8.3.2: the type says what the requester may do next (retry after
            # 'wait', give up after 'cancel'); keep the one the peer gave, if it is one.
            etype, cond = parse_error(stanza) or ("", "undefined-condition")
            if cond not in STANZA_CONDITIONS:
                cond = "undefined-condition"
            d.errback(StanzaError(cond, type_=etype if etype in ERROR_TYPES else None))
        return True


def _brief(stanza: Element) -> str:
    a = stanza.attributes
    payload = next((c for c in stanza.children if isinstance(c, Element)), None)
    what = f" {{{payload.uri}}}{payload.name}" if payload is not None else ""
    return (f"<iq type={a.get('type')} from={a.get('from')} to={a.get('to')}"
            f" id={a.get('id')}>{what}")


def _norm(value: str) -> str:
    try:
        return str(JID.parse(value))
    except ValueError:
        return value

