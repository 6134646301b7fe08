"""What counts as a defect: the checks run on every case's outcome.

* an exception escaping a protocol callback (``dataReceived``, ``frame_received``,
  ``connectionLost``);
* a logged failure or any event at level error/critical (``log.failure`` included);
* ``internal-server-error`` in anything written (stream or stanza error: a traceback path);
* output that is not well-formed, namespace-correct XML: per stream document (a new one at
  each ``<?xml`` header the server writes on a restart) for TCP, one complete document per
  message for WebSocket (RFC 7395 §3.3.3); stanzas must be in the stream's content
  namespace (``jabber:client`` on c2s, ``jabber:server`` on s2s, RFC 6120 §4.8.3);
* the clock left with more pending calls than a bound (checked by the runner after drains);
* time per input above a bound, memory per connection above a bound (runner).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat

from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from zope.interface import provider

from tests.fuzz.world import Outcome
from xmppd.jid import JID, JIDError

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
STANZAS = ("message", "presence", "iq")
SEP = "\x1f"  # expat's namespace separator: not an XML character, so never inside a URI


MEASURED = frozenset(("unbounded-buffer", "slow", "memory", "timers"))  # one defect class each


@dataclass
class Finding:
    kind: str  # exception, log-failure, internal-error, bad-output, slow, memory, timers
    detail: str
    key: str = ""  # what identifies the defect when no traceback does (bad-output)

    @property
    def signature(self) -> str:
        """What identifies the defect (for de-duplication): kind and the innermost frame."""
        if self.kind in MEASURED:
            return self.kind
        if self.key:
            return f"{self.kind}: {self.key}"
        lines = [ln.strip() for ln in self.detail.splitlines() if ln.strip()]
        frames = [ln for ln in lines if ln.startswith('File "')]
        last = lines[-1] if lines else ""
        if frames:
            where = frames[-1].split(", in ")[0].rsplit("/", 2)[-1] + " " + (
                frames[-1].split(", in ")[-1])
            return f"{self.kind}: {where}: {last.split(':')[0]}"
        return f"{self.kind}: {re.sub(r'[0-9]+', 'N', last[:120])}"


class LogCapture:
    """Collects failures and error/critical events published while installed."""

    def __init__(self) -> None:
        self.events: list[str] = []

        @provider(ILogObserver)
        def observe(event: dict[str, Any]) -> None:
            failure = event.get("log_failure")
            level = event.get("log_level")
            if failure is None and level not in (LogLevel.error, LogLevel.critical):
                return
            text = str(event.get("log_format") or event.get("message") or "")
            try:
                from twisted.logger import formatEvent

                text = formatEvent(event)
            except Exception:
                pass
            if failure is not None:
                text += "\n" + failure.getTraceback()
            self.events.append(text)

        self._observer = observe

    def __enter__(self) -> LogCapture:
        globalLogPublisher.addObserver(self._observer)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self._observer)

    def take(self) -> list[str]:
        out, self.events = self.events, []
        return out


# The parser's own limits: a stanza of max_stanza_size, a header of 8 KiB (xmppd/xmlstream.py).
MAX_PENDING = 262144 + 8192 + 4096


def check(outcome: Outcome, logged: list[str]) -> list[Finding]:
    found = [Finding("exception", e) for e in outcome.exceptions]
    if outcome.max_pending_bytes > MAX_PENDING:
        found.append(Finding("unbounded-buffer", (
            f"{outcome.max_pending_bytes} bytes of one unfinished element read and held "
            f"without a stream error ({outcome.mode})")))
    found += [Finding("log-failure", e) for e in logged]
    everything = b"".join(outcome.writes)
    # Input may carry the words itself (a client's own error stanza, echoed or archived).
    if everything.count(b"internal-server-error") > outcome.echoable.count(
            b"internal-server-error"):
        i = everything.index(b"internal-server-error")
        found.append(Finding("internal-error", everything[max(0, i - 600):i + 200].decode(
            "utf-8", "replace")))
    if outcome.mode.startswith("ws"):
        for w in outcome.writes:
            problem = _ws_message_problem(w, outcome.bound)
            if problem:
                found.append(Finding("bad-output", f"{problem}: {w[:600]!r}",
                                     "ws " + _key(problem, w)))
    else:
        content = "jabber:server" if outcome.mode.startswith("s2s") else "jabber:client"
        for doc in _documents(outcome.writes):
            problem = _stream_problem(doc, content, outcome.bound)
            if problem:
                found.append(Finding("bad-output", f"{problem}: {doc[-1500:]!r}",
                                     outcome.mode.split("-")[0] + " " + _key(problem, doc)))
    return found


def _key(problem: str, doc: bytes) -> str:
    """The kind of problem without positions, and the element it was found in."""
    general = re.sub(r"[0-9]+", "N", problem.split(":", 1)[0].split(" to ", 1)[0])
    where = re.search(r"column ([0-9]+)", problem)
    if where and "line 1," in problem:
        start = doc.rfind(b"<", 0, int(where.group(1)) + 1)
        tag = doc[start:start + 40].split(b" ", 1)[0].split(b">", 1)[0]
        return f"{general} in {tag.decode('utf-8', 'replace')}"
    return general


def _documents(writes: list[bytes]) -> list[bytes]:
    """The server's stream documents: each restart begins with our ``<?xml`` header."""
    docs: list[list[bytes]] = []
    for w in writes:
        if w.startswith(b"<?xml") or not docs:
            docs.append([])
        docs[-1].append(w)
    return [b"".join(d) for d in docs]


def _misaddressed(local: str, attrs: dict[str, str], bound: str) -> str:
    """A stanza written to a client's stream must be for that client's account: 'to' is
    absent or names its bare JID, with its resource or another (a message stored offline
    for a resource since gone is delivered as addressed, RFC 6121 §8.5.3.2.1), in any
    spelling that prepares to it (RFC 7622)."""
    to = attrs.get("to")
    if not bound or local not in STANZAS or to is None:
        return ""
    try:
        # Compared prepared: a stored message keeps the 'to' its sender wrote (LOCALHOST).
        if JID.parse(to).bare == JID.parse(bound).bare:
            return ""
    except JIDError:
        pass
    return f"{local} to {to!r} written to the stream of {bound!r}"


def _stream_problem(doc: bytes, content_ns: str, bound: str = "") -> str:
    depth = 0
    problems: list[str] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if depth == 1 and name != f"{NS_STREAMS}{SEP}stream":
            problems.append(f"root element is {name!r}")
        if depth == 2:
            uri, _, local = name.rpartition(SEP)
            if local in STANZAS and uri != content_ns:
                problems.append(f"stanza {local} in namespace {uri!r}, not {content_ns!r}")
            wrong = _misaddressed(local, attrs, bound)
            if wrong:
                problems.append(wrong)

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1

    p = expat.ParserCreate("UTF-8", SEP)
    p.StartElementHandler = start
    p.EndElementHandler = end
    try:
        p.Parse(doc, False)
    except expat.ExpatError as exc:
        return f"not well-formed ({exc})"
    return "; ".join(problems[:3])


def _ws_message_problem(msg: bytes, bound: str = "") -> str:
    roots: list[str] = []
    depth = 0
    wrong: list[str] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if depth == 1:
            roots.append(name)
            problem = _misaddressed(name.rpartition(SEP)[2], attrs, bound)
            if problem:
                wrong.append(problem)

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1

    p = expat.ParserCreate("UTF-8", SEP)
    p.StartElementHandler = start
    p.EndElementHandler = end
    try:
        p.Parse(msg, True)
    except expat.ExpatError as exc:
        return f"message not one well-formed document ({exc})"
    if len(roots) != 1:
        return f"message has {len(roots)} root elements"
    if wrong:
        return wrong[0]
    uri, _, local = roots[0].rpartition(SEP)
    if local in STANZAS and uri != "jabber:client":
        return f"stanza {local} in namespace {uri!r}"
    if local in ("open", "close") and uri != NS_FRAMING:
        return f"framing element {local} in namespace {uri!r}"
    if local in ("features", "error") and uri not in (NS_STREAMS, "jabber:client"):
        return f"{local} in namespace {uri!r}"
    return ""
