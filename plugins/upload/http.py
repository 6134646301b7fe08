"""The upload service's HTTP side, mounted on the server's HTTP(S) listeners at
/<service domain>/<token>/<file name>.

PUT (XEP-0363 §6) stores a body once, if its URL's signature, expiry, size and content type
match the slot; GET and HEAD serve it from disk with validators (RFC 7232), byte ranges
(RFC 7233) and a safe Content-Disposition (RFC 6266); OPTIONS answers CORS preflights and
every response carries the CORS headers (Fetch standard §3.2, "CORS protocol") so that web
clients on any origin can upload and download.

The server's request class asks ``body_sink`` where a body goes as soon as the headers are
in (xmppd.web.GuardedRequest): a PUT that can be refused from its URL and headers alone (bad
path, expired URL, no or oversized Content-Length) is answered before its body is read, and
any other is streamed straight into a partial file in the upload directory, which is renamed
into place once the slot's full checks passed.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Coroutine
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.http import datetimeToString
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from plugins.upload import ranges, slots
from plugins.upload.files import UploadMismatch
from plugins.upload.producer import FileProducer, gone
from xmppd.logs import Logger
from xmppd.web import BodyRefused

if TYPE_CHECKING:
    from plugins.upload import Upload

log = Logger(namespace="xmppd.plugins.upload.http")

ALLOW = b"GET, HEAD, PUT, OPTIONS"
# Request headers a web client may send (Authorization: XEP-0363 §4 slot headers).
ALLOW_HEADERS = ("Authorization", "Content-Type", "Range", "If-Range", "If-None-Match",
                 "If-Modified-Since")
# Response headers scripts may read besides the CORS-safelisted ones.
EXPOSE_HEADERS = b"Content-Length, Content-Range, Content-Disposition, Accept-Ranges, ETag"
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")


def reply(request: Request, code: int, text: str = "") -> None:
    """A complete response with a short plain-text body (unless the client left)."""
    if gone(request):
        return
    body = (text + "\n").encode("utf-8") if text else b""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"content-length", str(len(body)).encode("ascii"))
    if body:
        request.write(body)
    request.finish()


class UploadResource(Resource):
    isLeaf = True  # noqa: N815 (twisted.web API)

    def __init__(self, plugin: Upload) -> None:
        super().__init__()
        self.plugin = plugin

    def body_sink(self, request: Request, path: bytes, length: int | None) -> IO[bytes] | None:
        """Where a request body goes, decided from the request line and headers (see
        xmppd.web.GuardedRequest). Only PUT bodies are accepted, streamed to the disk."""
        if request.method != b"PUT":
            return None
        p = self.plugin
        # The refusal is read by the web page that sent the PUT only with the CORS headers.
        headers = tuple(self.cors_headers(request.getHeader("origin")))
        if not hasattr(p, "files"):
            raise BodyRefused(403, "uploads are not available", headers)
        if length is None:
            raise BodyRefused(411, "Content-Length is required", headers)
        if length > p.opts.max_file_size:
            raise BodyRefused(413, f"files are limited to {p.opts.max_file_size} bytes",
                              headers)
        query = path.split(b"?", 1)[1] if b"?" in path else b""
        expiry = next((v for k, _, v in (a.partition(b"=") for a in query.split(b"&"))
                       if k == b"e"), b"")
        if not expiry.isdigit():
            raise BodyRefused(403, "This URL is not signed for uploading", headers)
        if int(expiry) < p.now():
            raise BodyRefused(403, "This upload URL has expired", headers)
        return p.files.partial_file()

    def body_abandoned(self, body: IO[bytes]) -> None:
        """The client left before its PUT body was complete: nothing of it is kept."""
        name = getattr(body, "name", None)
        body.close()
        if isinstance(name, str) and Path(name).parent == self.plugin.files.partials:
            self.plugin.host.track(self.plugin.blocking(Path(name).unlink, True))

    def render(self, request: Request) -> Any:
        self.cors(request)
        method = request.method
        if method == b"OPTIONS":
            return self.preflight(request)
        if method in (b"GET", b"HEAD"):
            self._run(request, self.download(request))
        elif method == b"PUT":
            body = cast(IO[bytes], request.content)
            cast(Any, request).content = None  # ours now: twisted must not close it under us
            self._run(request, self.upload(request, body))
        else:
            request.setHeader(b"allow", ALLOW)
            reply(request, 405, "Method not allowed")
        return NOT_DONE_YET

    def _run(self, request: Request, work: Coroutine[Any, Any, None]) -> None:
        def failed(failure: Failure) -> None:
            log.failure("upload: {method} {uri} failed", failure,
                        method=request.method.decode("latin-1"),
                        uri=request.uri.decode("latin-1"))
            reply(request, 500, "Internal server error")

        d = Deferred.fromCoroutine(work).addErrback(failed)
        self.plugin.host.track(d)  # a clean stop lets an upload being stored finish

    # -- CORS (Fetch §3.2.2 / §3.2.3) -----------------------------------------------------------
    def cors_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        """Access-Control-Allow-Origin for every response: "*" by default, as the URLs are
        capabilities (a GET URL is shared in a message to be fetched by any client; a PUT
        URL is signed for one upload of one size, which a foreign page gains nothing from),
        and Prosody's mod_http_file_share answers any origin by default too; with
        ``cors_origins`` listing origins, only those (the request's Origin echoed, with
        ``Vary: Origin`` for caches) and none for others, whose pages then see nothing."""
        allowed = self.plugin.opts.cors_origins
        if "*" in allowed:
            return [(b"access-control-allow-origin", b"*")]
        out = [(b"vary", b"Origin")]
        if origin is not None and origin.lower() in allowed:
            out.append((b"access-control-allow-origin", origin.encode("latin-1")))
        return out

    def cors(self, request: Request) -> None:
        for name, value in self.cors_headers(request.getHeader("origin")):
            request.setHeader(name, value)

    def preflight(self, request: Request) -> bytes:
        request.setResponseCode(204)
        request.setHeader(b"allow", ALLOW)
        if request.getHeader("access-control-request-method") is not None and (
                request.responseHeaders.hasHeader(b"access-control-allow-origin")):
            asked = (request.getHeader("access-control-request-headers") or "").split(",")
            names = list(ALLOW_HEADERS)
            for name in (a.strip(" \t") for a in asked[:32]):
                if _HEADER_NAME.match(name) and name.lower() not in (
                        n.lower() for n in names):
                    names.append(name)  # no credentials are involved: whatever is asked
            request.setHeader(b"access-control-allow-methods", ALLOW)
            request.setHeader(b"access-control-allow-headers", ", ".join(names).encode())
            request.setHeader(b"access-control-max-age", b"86400")
            vary = request.responseHeaders.getRawHeaders(b"vary", [])
            request.setHeader(b"vary", b", ".join([*vary, b"Access-Control-Request-Headers"]))
        return b""

    @staticmethod
    def _path(request: Request) -> tuple[str, str] | None:
        """(token, file name) from /<segment>/<token>/<name>; None if malformed."""
        parts = request.postpath or []
        if len(parts) != 2:
            return None
        try:
            token, name = parts[0].decode("ascii"), parts[1].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not slots.TOKEN_RE.match(token):
            return None
        return token, name

    # -- PUT (XEP-0363 §6) ----------------------------------------------------------------------
    async def upload(self, request: Request, body: IO[bytes]) -> None:
        try:
            code, text = await self._upload(request, body)
        finally:
            body.close()
            name = getattr(body, "name", None)
            if isinstance(name, str) and Path(name).parent == self.plugin.files.partials:
                # refused: the streamed body goes away
                await self.plugin.blocking(Path(name).unlink, True)
        reply(request, code, text)  # only now: a refused body is gone when the client hears

    async def _upload(self, request: Request, body: IO[bytes]) -> tuple[int, str]:
        """Store the body if the slot allows it; the response's status and text."""
        p = self.plugin
        path = self._path(request)
        if path is None:
            return 400, "Malformed upload URL"
        token, name = path
        try:
            slots.check_filename(name)
        except ValueError as exc:
            return 400, f"Bad file name: {exc}"
        expires_arg, signature = _arg(request, b"e"), _arg(request, b"s")
        if expires_arg is None or signature is None or not expires_arg.isdigit():
            return 403, "This URL is not signed for uploading"
        expires = int(expires_arg)
        rec = await p.host.storage.uploads.get(token)
        if rec is None or rec.host != p.host.domain or rec.filename != name or not (
                slots.verify(p.key, signature, token, name, rec.size, rec.content_type,
                             expires)):
            return 403, "Invalid upload URL"
        if expires < p.now():
            return 403, "This upload URL has expired"
        if rec.state != "pending":
            return 409, "This slot has been used already"
        length = request.getHeader("content-length")
        if length is None:
            return 411, "Content-Length is required"
        if not (length.isascii() and length.isdigit()):
            return 400, "Bad Content-Length"
        if int(length) > rec.size:
            return 413, f"The slot is for {rec.size} bytes"
        received = body.seek(0, os.SEEK_END)
        if int(length) != rec.size or received != rec.size:
            return 400, f"The slot is for exactly {rec.size} bytes"
        given = request.getHeader("content-type")
        if rec.content_type:
            if given is None or not slots.same_media_type(given, rec.content_type):
                return 415, f"The slot is for {rec.content_type}"
            content_type = rec.content_type
        else:  # §6: MAY assume application/octet-stream when no type was given
            try:
                content_type = slots.check_content_type(given or "")
            except ValueError:
                content_type = "application/octet-stream"
        if not await p.host.storage.uploads.claim(token):
            return 409, "This slot has been used already"
        try:
            await p.blocking(p.files.receive, rec.username, token, body, rec.size)
        except UploadMismatch as exc:
            await p.host.storage.uploads.release(token)
            return 400, f"Upload incomplete: {exc}"
        except BaseException:
            await p.host.storage.uploads.release(token)
            raise
        if not await p.host.storage.uploads.complete(token, p.now(), content_type):
            await p.blocking(p.files.remove, [(rec.username, token)])  # account deleted
            return 410, "The slot no longer exists"
        return 201, ""

    # -- GET / HEAD -----------------------------------------------------------------------------
    async def download(self, request: Request) -> None:
        p = self.plugin
        path = self._path(request)
        if path is None:
            return reply(request, 404, "Not found")
        token, name = path
        rec = await p.host.storage.uploads.get(token)
        if rec is None or rec.host != p.host.domain or rec.filename != name or rec.state in (
                "pending", "uploading"):
            return reply(request, 404, "Not found")
        stored = rec.stored or rec.created
        now = p.now()
        lifetime = int(p.opts.expire_after)
        if rec.state == "gone" or (lifetime and stored + lifetime <= now):
            return reply(request, 410, "This file has expired")
        try:
            fh = await p.blocking(_open, p.files.path(rec.username, token))
        except FileNotFoundError:
            return reply(request, 404, "Not found")
        if gone(request):
            fh.close()
            return None
        self._serve(request, fh, rec.content_type or "application/octet-stream", token,
                    name, stored, (stored + lifetime - now) if lifetime else 31536000)
        return None

    def _serve(self, request: Request, fh: IO[bytes], content_type: str, token: str,
               name: str, modified: int, max_age: int) -> None:
        size = os.fstat(fh.fileno()).st_size
        etag = f'"{token}"'  # uploads never change: the token is a strong validator
        h = request.setHeader
        h(b"accept-ranges", b"bytes")
        h(b"etag", etag.encode("ascii"))
        h(b"last-modified", datetimeToString(modified))
        h(b"cache-control", f"public, max-age={max(0, max_age)}, immutable".encode())
        h(b"access-control-expose-headers", EXPOSE_HEADERS)
        h(b"x-content-type-options", b"nosniff")
        h(b"content-security-policy", b"default-src 'none'; sandbox")
        h(b"content-disposition", slots.content_disposition(name, content_type).encode())
        if ranges.not_modified(request.getHeader("if-none-match"),
                               request.getHeader("if-modified-since"), etag, modified):
            fh.close()
            request.setResponseCode(304)
            request.finish()
            return
        selected: list[ranges.Range] | None = None
        if request.method == b"GET" and ranges.if_range_holds(
                request.getHeader("if-range"), etag, modified):
            try:
                selected = ranges.parse_range(request.getHeader("range"), size)
            except ranges.Unsatisfiable:
                fh.close()
                h(b"content-range", f"bytes */{size}".encode("ascii"))
                return reply(request, 416, "Range not satisfiable")
        pieces: list[bytes | tuple[int, int]]
        if selected is None:
            h(b"content-type", content_type.encode("ascii"))
            pieces = [(0, size)]
        elif len(selected) == 1:
            (first, last), = selected
            request.setResponseCode(206)
            h(b"content-type", content_type.encode("ascii"))
            h(b"content-range", f"bytes {first}-{last}/{size}".encode("ascii"))
            pieces = [(first, last - first + 1)]
        else:  # RFC 7233 §4.1 and Appendix A: multipart/byteranges
            boundary = secrets.token_hex(16)
            request.setResponseCode(206)
            h(b"content-type", f"multipart/byteranges; boundary={boundary}".encode("ascii"))
            pieces = []
            for i, (first, last) in enumerate(selected):
                pieces.append((b"\r\n" if i else b"") + (
                    f"--{boundary}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Range: bytes {first}-{last}/{size}\r\n\r\n").encode("ascii"))
                pieces.append((first, last - first + 1))
            pieces.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
        total = sum(len(x) if isinstance(x, bytes) else x[1] for x in pieces)
        h(b"content-length", str(total).encode("ascii"))
        if request.method == b"HEAD":
            fh.close()
            request.finish()
            return
        FileProducer(request, fh, pieces).start()


def _open(path: Path) -> IO[bytes]:
    return open(path, "rb")  # the producer closes it


def _arg(request: Request, name: bytes) -> str | None:
    values = (request.args or {}).get(name)
    if not values or len(values) != 1:
        return None
    try:
        return values[0].decode("ascii")
    except UnicodeDecodeError:
        return None
