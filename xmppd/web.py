"""One twisted.web site for every HTTP(S) listener; plugins mount resources on it.

Core mounts the XMPP WebSocket endpoint (/xmpp-websocket, RFC 7395), BOSH (/http-bind,
XEP-0124/XEP-0206), XEP-0156 discovery (/.well-known/host-meta and host-meta.json) and the
load balancers' health check (/health);
plugins add upload, the web client...
"""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import IO, TYPE_CHECKING, Any

from twisted.internet import protocol
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from xmppd import proxyproto
from xmppd.config import ListenerConfig
from xmppd.logs import Logger
from xmppd.stanza import escape_attr
from xmppd.tls import listener_tls

if TYPE_CHECKING:
    from xmppd.server import XmppServer

NS_XRD = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
REL_WEBSOCKET = "urn:xmpp:alt-connections:websocket"
REL_BOSH = "urn:xmpp:alt-connections:xbosh"
log = Logger(namespace="xmppd.web")


MAX_PLAIN_BODY = 64 * 1024  # request bodies for resources that do not stream them


class BodyRefused(Exception):
    """Raised by a resource's ``body_sink`` to refuse a request before its body is read."""

    def __init__(self, status: int, message: str,
                 headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers  # more response headers (CORS, so a web page sees the status)


class GuardedRequest(Request):
    """Decides where a request body goes as soon as the headers are in.

    twisted.web would otherwise buffer any body of any size (to a temporary file) before a
    resource sees the request. A resource with ``body_sink(request, path, length)`` returns
    the file to stream the body into (or raises BodyRefused); every other path accepts at
    most MAX_PLAIN_BODY bytes.
    """

    _limit: int | None = None
    _received = 0
    _refused = False
    _sink_owner: Any = None
    _body_done = False

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802
        self._body_done = True  # the whole body is in; the resource owns it from here
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 (twisted API)
        """A client that goes away mid-body leaves a streamed file behind: its owner may
        clean up (``body_abandoned``)."""
        owner = self._sink_owner
        if owner is not None and not self._body_done and self.content is not None:
            abandoned = getattr(owner, "body_abandoned", None)
            if abandoned is not None:
                abandoned(self.content)
        super().connectionLost(reason)

    def gotLength(self, length: int | None) -> None:  # noqa: N802 (twisted API)
        path: bytes = getattr(self.channel, "_path", b"") or b""
        first = path.split(b"?", 1)[0].lstrip(b"/").split(b"/", 1)[0]
        root = self.channel.site.resource  # type: ignore[attr-defined]
        resource = getattr(root, "children", {}).get(first)
        sink = getattr(resource, "body_sink", None)
        # requestReceived() sets these only after the body; the sink needs the method now.
        self.method = getattr(self.channel, "_command", b"") or b""
        try:
            if sink is not None:
                target: IO[bytes] | None = sink(self, path, length)
                if target is not None:
                    self.content = target
                    self._sink_owner = resource
                    return
            if length is not None and length > MAX_PLAIN_BODY:
                raise BodyRefused(413, "request body too large")
        except BodyRefused as refused:
            self._refuse(refused)
            return
        self._limit = MAX_PLAIN_BODY
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 (twisted API)
        if self._refused:
            return
        if self._limit is not None:
            self._received += len(data)
            if self._received > self._limit:
                self._refuse(BodyRefused(413, "request body too large"))
                return
        super().handleContentChunk(data)

    def _refuse(self, refused: BodyRefused) -> None:
        """Answer at once and close: the body is never read."""
        self._refused = True
        self.content = io.BytesIO()
        body = (refused.message + "\n").encode()
        reason = {400: b"Bad Request", 403: b"Forbidden", 411: b"Length Required",
                  413: b"Payload Too Large"}.get(refused.status, b"Error")
        transport = self.channel.transport
        if transport is not None:
            extra = b"".join(b"%s: %s\r\n" % (name, value) for name, value in refused.headers
                             if b"\r" not in value and b"\n" not in value)
            transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                            b"content-length: %d\r\nconnection: close\r\n%s\r\n%s"
                            % (refused.status, reason, len(body), extra, body))
            transport.loseConnection()


class Root(Resource):
    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"xmppd\n"


def origin_allowed(origin: str, host: str, allowed: list[str]) -> bool:
    """Same origin, a configured origin, or '*' (RFC 6455 §10.2, RFC 7395 §5)."""
    if "*" in allowed or origin in allowed:
        return True
    bare = origin.split("://", 1)[-1]
    return bool(host) and bare == host


class Health(Resource):
    """``/health`` for load balancers (HAProxy ``option httpchk GET /health``): 200 while the
    node takes new connections, 503 once it is draining (a shutdown or restart is scheduled,
    or it is stopping), so the balancer sends new clients to the other nodes. Any method
    (HAProxy's default check is ``OPTIONS /``); open to every address, says nothing more."""

    isLeaf = True  # noqa: N815 (twisted.web API)

    def __init__(self, server: XmppServer) -> None:
        super().__init__()
        self.xmppd = server

    def render(self, request: Request) -> bytes:
        draining = self.xmppd.draining
        request.setResponseCode(503 if draining else 200)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return b"draining\n" if draining else b"ok\n"


class HostMeta(Resource):
    """XEP-0156 §3: where the WebSocket and BOSH endpoints are, as XRD or JSON (JRD)."""

    isLeaf = True  # noqa: N815 (twisted.web API)

    def __init__(self, web: WebServer, as_json: bool) -> None:
        super().__init__()
        self.web = web
        self.as_json = as_json

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        links = [(REL_WEBSOCKET, self.web.websocket_url(request))]
        if self.web.server.config.bosh.enabled:
            links.append((REL_BOSH, self.web.bosh_url(request)))
        request.setHeader(b"access-control-allow-origin", b"*")
        if self.as_json:
            request.setHeader(b"content-type", b"application/json")
            return json.dumps({"links": [{"rel": rel, "href": href}
                                         for rel, href in links]}).encode()
        request.setHeader(b"content-type", b"application/xrd+xml; charset=utf-8")
        return (f"<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='{NS_XRD}'>\n"
                + "".join(f"  <Link rel='{rel}' href=\"{escape_attr(href)}\"/>\n"
                          for rel, href in links)
                + "</XRD>\n").encode()


class WebServer:
    def __init__(self, server: XmppServer) -> None:
        self.server = server
        self.root = Root()
        wellknown = Resource()
        self.root.putChild(b".well-known", wellknown)
        wellknown.putChild(b"host-meta", HostMeta(self, False))
        wellknown.putChild(b"host-meta.json", HostMeta(self, True))
        self.root.putChild(b"health", Health(server))
        self.site = Site(self.root)
        self.site.displayTracebacks = False
        self.site.noisy = False
        self._ws_mounted = False

    def mount(self, path: str, resource: Resource) -> None:
        """Serve ``resource`` at /path (one segment, e.g. "upload")."""
        self.root.putChild(path.strip("/").encode(), resource)

    def paths(self) -> set[str]:
        return {k.decode() for k in self.root.children}

    def unmount(self, path: str) -> None:
        self.root.delEntity(path.strip("/").encode())

    def listen(self, lc: ListenerConfig) -> IListeningPort:
        secure = lc.type == "https"
        if not self._ws_mounted:
            # One resource serves both listeners; 'secure' comes from the listener type.
            self.root.putChild(b"xmpp-websocket", _PerListener(self.server))
            if self.server.config.bosh.enabled:
                from xmppd.bosh.http import BoshResource

                self.root.putChild(b"http-bind", BoshResource(self.server))
            self._ws_mounted = True
        web = self.server.config.web
        factory: Any = _ListenerSite(self.root, secure, web.header_timeout,
                                     web.max_pending_per_ip)
        tls = None
        if secure:
            assert self.server.certs is not None
            tls = listener_tls(self.server.certs.factory, "https")
        return proxyproto.listen(self.server.reactor, lc.port, lc.address, factory, tls,
                                 proxyproto.policy_for(self.server.config, lc))

    def websocket_url(self, request: Request) -> str:
        public = self.server.config.web.public_url.rstrip("/")
        if public:
            scheme, rest = public.split("://", 1)
            ws = "wss" if scheme == "https" else "ws"
            return f"{ws}://{rest}/xmpp-websocket"
        secure = request.isSecure() or (request.getHeader("x-forwarded-proto") == "https")
        host = (request.getHeader("host") or "localhost")
        return f"{'wss' if secure else 'ws'}://{host}/xmpp-websocket"

    def bosh_url(self, request: Request) -> str:
        """The XEP-0124 endpoint as the requesting client reaches it (XEP-0156 §3)."""
        public = self.server.config.web.public_url.rstrip("/")
        if public:
            return f"{public}/http-bind"
        secure = request.isSecure() or (request.getHeader("x-forwarded-proto") == "https")
        host = (request.getHeader("host") or "localhost")
        return f"{'https' if secure else 'http'}://{host}/http-bind"


class GuardedChannel(HTTPChannel):
    """An HTTP/1.1 connection that must finish each request's headers in time.

    twisted.web's only clock is an idle timeout that every byte resets, so one header byte
    every few seconds held a connection for ever (found by hand: 500 such connections from
    one address, all kept). Here a deadline runs from the connection (TLS handshake
    included) and again from the end of each request on a kept-alive connection, until the
    next request's headers are complete; and an address may have at most
    ``web.max_pending_per_ip`` connections at that stage. A WebSocket or a held BOSH request
    is past its headers, so neither limit touches it."""

    _deadline: IDelayedCall | None = None
    _peer = ""

    def connectionMade(self) -> None:  # noqa: N802 (twisted API)
        super().connectionMade()
        transport: Any = self.transport
        self._peer = str(getattr(transport.getPeer(), "host", ""))
        self._await_headers()

    def allHeadersReceived(self) -> None:  # noqa: N802 (twisted API)
        self._headers_done()
        super().allHeadersReceived()

    def requestDone(self, request: Request) -> None:  # noqa: N802 (twisted API)
        if self.persistent and not self._deadline:
            self._await_headers()  # first: a pipelined request is parsed inside requestDone
        super().requestDone(request)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        self._headers_done()
        super().connectionLost(reason)

    def _await_headers(self) -> None:
        site: _ListenerSite = self.site  # type: ignore[attr-defined]
        if site.pending[self._peer] >= site.max_pending_per_ip:
            log.info("HTTP: refused a connection from {peer}: {n} already sending headers",
                     peer=self._peer, n=site.pending[self._peer])
            self._abort()
            return
        site.pending[self._peer] += 1
        self._deadline = self.callLater(site.header_timeout, self._too_slow)

    def _headers_done(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is None:
            return
        if deadline.active():
            deadline.cancel()
        site: _ListenerSite = self.site  # type: ignore[attr-defined]
        site.pending[self._peer] -= 1
        if site.pending[self._peer] <= 0:
            del site.pending[self._peer]

    def _too_slow(self) -> None:
        self._headers_done()
        self._abort()

    def _abort(self) -> None:
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()


def _guarded_channel(_site: Site) -> Any:
    # twisted.web picks HTTP/1.1 or HTTP/2 (after ALPN) in this wrapper; only HTTP/1.1 is
    # offered (xmppd/tls.py ALPN), so the channel inside is always ours. (Twisted's own
    # factory function is _genericHTTPChannelProtocolFactory; Twisted is pinned.)
    return _GenericHTTPChannelProtocol(GuardedChannel())


class _ListenerSite(Site):
    """A Site per listener, so a request knows whether its listener was TLS."""

    protocol = _guarded_channel

    def __init__(self, root: Resource, secure: bool, header_timeout: float = 30.0,
                 max_pending_per_ip: int = 128) -> None:
        super().__init__(root, requestFactory=GuardedRequest)
        self.secure = secure
        self.displayTracebacks = False
        self.noisy = False
        self.header_timeout = header_timeout
        self.max_pending_per_ip = max_pending_per_ip
        self.pending: Counter[str] = Counter()  # connections per address still in headers


class _PerListener(Resource):
    """Dispatches the WebSocket upgrade to the resource for the listener's security."""

    isLeaf = True  # noqa: N815 (twisted.web API)

    def __init__(self, server: XmppServer) -> None:
        super().__init__()
        from xmppd.websocket import websocket_resource

        self.secure = websocket_resource(server, True)
        self.plain = websocket_resource(server, False)

    def render(self, request: Request) -> Any:
        site = request.channel.site  # type: ignore[attr-defined]
        target = self.secure if getattr(site, "secure", False) else self.plain
        return target.render(request)
