"""Barriers: an IQ round trip on a stream, instead of sleeping until the server "probably"
handled what the stream sent.

The server handles one stream's top-level elements strictly in order (RFC 6120 §10.1;
``xmppd.xmlstream.OrderedXmlStream``: the next element waits until the previous one's
handling, storage writes included, has finished). So once the answer to a ping sent after
some stanzas arrives, the server has finished with those stanzas: routed them, stored them
offline or in the archive, written what they caused to other local sessions. And what the
server wrote to this stream earlier has been read before the answer (TCP keeps order), so a
barrier on a receiving stream also means "everything already sent to you has arrived".

Two barriers in a row — on the stream that acted, then on the stream that should (or should
not) see the effect — replace a sleep before a positive or a negative assertion.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar

from tests.support.raw import RawStream

if TYPE_CHECKING:
    from tests.support.client import Client  # which uses this module in connect()

T = TypeVar("T")


async def barrier(*streams: Client | RawStream, timeout: float = 30.0) -> None:
    """A ping (XEP-0199) to the server on each stream in turn, awaiting each answer. On a
    raw stream what arrived before the answer stays queued for its next reads."""
    for s in streams:
        if isinstance(s, RawStream):
            await s.barrier(timeout)
        else:
            await s.plugin["xep_0199"].send_ping(s.boundjid.domain, timeout=timeout)


async def barrier_to(x: Client, y: Client, timeout: float = 30.0) -> None:
    """A ping from ``x`` to ``y``'s full JID, which y's client answers: a barrier across two
    servers or two cluster nodes. Their links keep order (one s2s stream; in a cluster one
    Redis connection per node for what it publishes, one subscription that receives both the
    state events and the stanzas), so when the answer is back, y's server has handled what
    x's server sent it before (a session's new flags, stanzas), and y has read what was
    written to it before the ping. (Not what that server then does in the background: a
    cluster node reloads another's changed blocklist from storage after the event.)"""
    await x.plugin["xep_0199"].send_ping(y.boundjid.full, timeout=timeout)


def drain(queue: asyncio.Queue[T]) -> list[T]:
    """What a client's queue holds now (after a barrier: everything sent to it so far)."""
    out: list[T] = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def queued(queue: asyncio.Queue[T]) -> list[T]:
    """Like ``drain`` but leaves the items queued, for later waits that look for them."""
    items = drain(queue)
    for item in items:
        queue.put_nowait(item)
    return items
