"""/http-bind: the HTTP side of BOSH (XEP-0124 §5, §7, §17; XEP-0206).

Every request is a POST of one <body/>; the session it names (sid) takes it from there
(xmppd.bosh.session). This module reads and checks the HTTP request, creates sessions,
answers what no session can (an unknown sid, a body that is not BOSH), and speaks CORS
for browser clients on other origins.
"""

from __future__ import annotations

import io
import secrets
from typing import IO, TYPE_CHECKING, Any

from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from xmppd import netaddr
from xmppd.bosh import wire
from xmppd.bosh.request import Exchange, Terms
from xmppd.bosh.request import Request as BoshRequest
from xmppd.bosh.session import BoshSession
from xmppd.bosh.stream import Address, BoshC2S, BoshTransport
from xmppd.context import ServerContext
from xmppd.jid import JIDError, prepare_domain
from xmppd.logs import Logger
from xmppd.web import BodyRefused, origin_allowed

if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted.words.xish.domish import Element


NS_XML = "http://www.w3.org/XML/1998/namespace"
_INFO = (b"XMPP over BOSH (XEP-0124, XEP-0206): POST <body xmlns='http://jabber.org/protocol/"
         b"httpbind'/> wrappers here.\n")


class HttpExchange:
    """One POST waiting for its answer. The answer has a Content-Length (no chunked coding,
    §5) and is never cached; a client that goes away first is reported to ``on_lost``."""

    def __init__(self, request: Request, cors: list[tuple[bytes, bytes]]) -> None:
        self.request = request
        self.cors = cors
        self.alive = True
        self.on_lost: Callable[[Exchange], None] | None = None
        request.notifyFinish().addErrback(self._gone)

    def _gone(self, reason: Failure) -> None:
        if self.alive:
            self.alive = False
            if self.on_lost is not None:
                self.on_lost(self)

    def respond(self, body: bytes, content_type: str = wire.CONTENT_TYPE,
                status: int = 200) -> None:
        if not self.alive:
            return
        self.alive = False
        r = self.request
        r.setResponseCode(status)
        r.setHeader(b"content-type", content_type.encode())
        r.setHeader(b"content-length", str(len(body)).encode())
        r.setHeader(b"cache-control", b"no-store")
        # The client may name the Content-Type (§7.1, text/html included): should a
        # response ever be shown as a page, nothing in it runs.
        r.setHeader(b"x-content-type-options", b"nosniff")
        r.setHeader(b"content-security-policy", b"default-src 'none'; sandbox")
        for k, v in self.cors:
            r.setHeader(k, v)
        r.write(body)
        r.finish()


class BoshResource(Resource):
    """The BOSH connection manager of this server, one for all HTTP(S) listeners."""

    isLeaf = True  # noqa: N815 (twisted.web API)
    log = Logger()

    def __init__(self, server: ServerContext) -> None:
        super().__init__()
        self.xmppd = server
        self.config = server.config.bosh
        self.sessions: dict[str, BoshSession] = {}
        # The largest body any session may send: the post-authentication stanza budget
        # and the wrapper; a session's own (smaller before authentication) is then checked.
        self.max_body = server.config.limits.max_stanza_size + wire.BODY_SLACK

    def forget(self, session: BoshSession) -> None:
        if self.sessions.get(session.sid) is session:
            del self.sessions[session.sid]

    # -- HTTP -----------------------------------------------------------------------------------
    def body_sink(self, request: Request, path: bytes, length: int | None) -> IO[bytes] | None:
        """A POST body is read only when it says how long it is (§5: no chunked coding)
        and fits the largest budget; anything else is refused before it is read."""
        if request.method != b"POST":
            return None
        if length is None:
            raise BodyRefused(411, "Content-Length is required")
        if length > self.max_body:
            raise BodyRefused(413, "request body too large")
        return io.BytesIO()

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return _INFO

    def render_OPTIONS(self, request: Request) -> bytes:  # noqa: N802
        """A CORS preflight (Fetch standard): browsers ask before a POST of text/xml."""
        cors = self._cors(request)
        if cors is None:
            return b"origin not allowed\n"
        for k, v in cors:
            request.setHeader(k, v)
        request.setHeader(b"access-control-allow-methods", b"POST, OPTIONS")
        asked = request.getHeader("access-control-request-headers") or ""
        allowed = [h.strip() for h in asked.split(",")
                   if h.strip() and all(c.isalnum() or c == "-" for c in h.strip())]
        request.setHeader(b"access-control-allow-headers",
                          ", ".join(allowed or ["content-type"]).encode())
        request.setHeader(b"access-control-max-age", b"86400")
        request.setHeader(b"content-length", b"0")
        return b""

    def render_POST(self, request: Request) -> Any:  # noqa: N802
        cors = self._cors(request)
        if cors is None:
            return b"origin not allowed\n"
        assert request.content is not None
        data = request.content.read()
        exchange = HttpExchange(request, cors)
        try:
            body = wire.parse_body(data, self.max_body)
        except wire.BadBody as exc:
            # Not a BOSH request at all, so no session can be told: HTTP 400 (§17.1), and
            # the terminal condition for clients that only read bodies (§17.2).
            self.log.debug("bad BOSH request: {why}", why=str(exc))
            exchange.respond(wire.terminate("bad-request"), status=400)
            return NOT_DONE_YET
        try:
            self._dispatch(request, body, len(data), exchange)
        except Exception:
            self.log.failure("BOSH request failed")
            exchange.respond(wire.terminate("internal-server-error"))
        return NOT_DONE_YET

    def _cors(self, request: Request) -> list[tuple[bytes, bytes]] | None:
        """Requests from the same origin, from a configured one or without Origin are
        served; another browser origin gets 403 (as for the WebSocket, RFC 6455 §10.2)."""
        origin = request.getHeader("origin")
        if not origin or origin == "null":
            return []
        if not origin_allowed(origin, request.getHeader("host") or "", self.config.origins):
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return None
        return [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin")]

    # -- BOSH -----------------------------------------------------------------------------------
    def _dispatch(self, request: Request, body: Element, size: int,
                  exchange: HttpExchange) -> None:
        sid = wire.attribute(body, "sid")
        session = self.sessions.get(sid) if sid is not None else None
        try:
            rid = wire.integer(wire.attribute(body, "rid"), wire.MAX_RID)
            if not rid:
                raise ValueError("rid")  # §6: every request has one, a positive integer
        except ValueError:
            if session is not None:
                session.fail(exchange, "bad-request")
            else:
                exchange.respond(wire.terminate("bad-request"))
            return
        secure, peer = self._origin_of(request)
        if sid is None:
            self._create(request, body, rid, size, exchange, secure, peer)
        elif session is None:
            # §17.2 (1): no such session (never was, or ended). Its creator's 'ver' is not
            # known, so the current form, not the deprecated HTTP 404 (§17.1).
            exchange.respond(wire.terminate("item-not-found"))
        elif session.secure and not secure:
            # §19.1: a request of a secure session over plain HTTP: the connection is closed
            # and the session left alone (ending it would let anyone end it).
            exchange.alive = False
            request.loseConnection()
        else:
            session.receive(rid, body, size, exchange)

    def _origin_of(self, request: Request) -> tuple[bool, Address]:
        """Whether the client reached us over TLS, and its address: the listener's, or what
        a trusted proxy says (X-Forwarded-Proto, X-Forwarded-For), as for the WebSocket."""
        peer = request.getClientAddress()
        host = str(getattr(peer, "host", "") or "")
        port = int(getattr(peer, "port", 0) or 0)
        secure = request.isSecure()
        proxies = netaddr.networks(self.xmppd.config.web.trusted_proxies)
        if netaddr.within(host, proxies):
            if (request.getHeader("x-forwarded-proto") or "").lower() == "https":
                secure = True
            forwarded = request.getHeader("x-forwarded-for")
            if forwarded:
                host, port = netaddr.client_address(host, forwarded, proxies), 0
        return secure, Address(host, port)

    def _create(self, request: Request, body: Element, rid: int, size: int,
                exchange: HttpExchange, secure: bool, peer: Address) -> None:
        """§7 and XEP-0206 §3-4: a new session and its C2S stream."""
        server = self.xmppd
        if server.stopping:
            exchange.respond(wire.terminate("system-shutdown"))
            return
        to = wire.attribute(body, "to")
        if not to:
            exchange.respond(wire.terminate("improper-addressing"))
            return
        try:
            domain = prepare_domain(to)
        except JIDError:
            domain = ""
        if domain not in server.hosts:
            exchange.respond(wire.terminate("host-unknown"))
            return
        if not secure and server.config.tls.require_c2s:
            uri = self._https_url(request)
            exchange.respond(wire.see_other_uri(uri) if uri
                             else wire.terminate("policy-violation"))
            return
        try:
            terms, ver, legacy, content = self._terms(body)
        except ValueError:
            exchange.respond(wire.terminate("bad-request"))
            return
        limits = server.config.limits
        if size > min(limits.max_preauth_stanza_size, limits.max_stanza_size) + wire.BODY_SLACK:
            exchange.respond(wire.terminate("policy-violation"),
                             status=403 if legacy else 200)
            return
        sid = secrets.token_urlsafe(24)  # §19.3: unpredictable, never repeated
        version = wire.attribute(body, "version", wire.NS_XBOSH) or ""
        session = BoshSession(self, server, sid, terms, secure, content, ver, legacy, version)
        self.sessions[sid] = session
        c2s = BoshC2S(server, secure, session)
        transport = BoshTransport(session, peer, request.getHost())
        attrs = {"to": to, "version": version}
        lang = wire.attribute(body, "lang", NS_XML)
        if lang:
            attrs["xml:lang"] = lang
        frm = wire.attribute(body, "from")
        if frm:
            attrs["from"] = frm
        first = BoshRequest(rid, None, body, size, server.clock.seconds(), creation=True)
        session.start(c2s, transport, first, exchange, attrs)

    def _terms(self, body: Element) -> tuple[Terms, str, bool, str]:
        """§7.1-7.2: what the client asked for, within the configured limits."""
        cfg = self.config
        wait = wire.integer(wire.attribute(body, "wait"), 65535)
        hold = wire.integer(wire.attribute(body, "hold"), 255)
        wait = cfg.max_wait if wait is None else min(wait, cfg.max_wait)
        hold = 1 if hold is None else min(hold, cfg.max_hold)
        asked = wire.attribute(body, "ver")
        legacy = asked is None
        ours = wire.VERSION
        if asked is not None:
            major, _, minor = asked.strip().partition(".")
            theirs = (wire.integer(major, 999) or 0, wire.integer(minor or "0", 999) or 0)
            ours = min(ours, theirs)
        content = wire.attribute(body, "content") or wire.CONTENT_TYPE
        if len(content) > 128 or not content.isascii() or not content.isprintable():
            raise ValueError("content")
        inactivity = cfg.inactivity
        if wait == 0 or hold == 0:
            inactivity += 2 * cfg.polling  # §12: polling sessions get longer
        terms = Terms(wait=wait, hold=hold, requests=hold + 1, inactivity=inactivity,
                      polling=cfg.polling, maxpause=cfg.max_pause)
        return terms, f"{ours[0]}.{ours[1]}", legacy, content

    def _https_url(self, request: Request) -> str:
        """Where the client should go when plain HTTP is not good enough (see-other-uri)."""
        public = self.xmppd.config.web.public_url.rstrip("/")
        if public.startswith("https://"):
            return public + "/http-bind"
        port = self.xmppd.bound_port("https")
        if port is None:
            return ""
        host = (request.getHeader("host") or "localhost").rsplit(":", 1)[0]
        if host.startswith("[") and not host.endswith("]"):
            host = request.getHeader("host") or "localhost"  # an IPv6 literal, no port
        return f"https://{host}" + ("" if port == 443 else f":{port}") + "/http-bind"
