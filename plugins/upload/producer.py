"""Streaming a file (or slices of it) into an HTTP response without holding it in memory."""

from __future__ import annotations

from typing import IO

from twisted.internet.interfaces import IPullProducer
from twisted.web.server import Request
from zope.interface import implementer

CHUNK = 1 << 16


def gone(request: Request) -> bool:
    """The response is finished or the client left: nothing more may be written."""
    return bool(request.finished) or request.channel is None


@implementer(IPullProducer)
class FileProducer:
    """Writes literal bytes and (offset, length) slices of a file to a request, one chunk
    each time the transport asks for more, so a download never sits in memory."""

    def __init__(self, request: Request, fh: IO[bytes],
                 pieces: list[bytes | tuple[int, int]]) -> None:
        self.request = request
        self.fh = fh
        self.pieces = pieces
        self.index = 0
        self.remaining = -1  # bytes left of the current file slice; -1: not started
        self.done = False

    def start(self) -> None:
        self.request.registerProducer(self, False)

    def resumeProducing(self) -> None:  # noqa: N802 (IPullProducer)
        if self.done:
            return
        if self.index >= len(self.pieces):
            self._finish()
            return
        piece = self.pieces[self.index]
        if isinstance(piece, bytes):
            self.index += 1
            self.request.write(piece)
            return
        offset, length = piece
        if self.remaining < 0:
            self.fh.seek(offset)
            self.remaining = length
        data = self.fh.read(min(CHUNK, self.remaining)) if self.remaining else b""
        if self.remaining and not data:
            # The file shrank under us: the promised Content-Length cannot be kept, so the
            # connection is closed rather than the response finished (RFC 9112 §6.3).
            self.stopProducing()
            self.request.unregisterProducer()
            if self.request.channel is not None:
                self.request.channel.loseConnection()
            return
        self.remaining -= len(data)
        if self.remaining == 0:
            self.index += 1
            self.remaining = -1
        if data:
            self.request.write(data)

    def _finish(self) -> None:
        self.done = True
        self.fh.close()
        self.request.unregisterProducer()
        if not gone(self.request):
            self.request.finish()

    def stopProducing(self) -> None:  # noqa: N802 (IPullProducer)
        self.done = True
        self.fh.close()
