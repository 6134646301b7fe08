"""Micro-benchmark of the stanza serializer (``xmppd.stanza.serialize``).

The serializer runs once per delivered stanza, so a change to it is measured here before
and after: ``python -m bench.serialize_micro [--baseline OLD_STANZA_PY]``. With a baseline
(e.g. ``git show HEAD~1:xmppd/stanza.py > /tmp/old.py``) both are timed in alternating
rounds in one process, which keeps the comparison fair on a machine that is also busy with
other work. Figures are the best round's microseconds per call.
"""

from __future__ import annotations

import argparse
import importlib.util
import timeit
from collections.abc import Callable
from types import ModuleType

from xmppd import stanza as st
from xmppd.xmlparser import parse_fragment

CASES: dict[str, str] = {
    # What a client sends for a one-to-one message (RFC 6120 §4.7.4 xml:lang added by c2s).
    "chat message": (
        "<message from='alice@example.org/phone' to='bob@example.org' type='chat'"
        " id='5f3a9c1e-8e2b-4d2a' xml:lang='en'><body>Hello, are we still on for lunch?</body>"
        "<active xmlns='http://jabber.org/protocol/chatstates'/>"
        "<origin-id xmlns='urn:xmpp:sid:0' id='5f3a9c1e-8e2b-4d2a'/>"
        "<markable xmlns='urn:xmpp:chat-markers:0'/></message>"),
    # A room's presence broadcast to one occupant (XEP-0045 §7.2.3).
    "MUC presence": (
        "<presence from='room@conference.example.org/alice' to='bob@example.org/laptop'"
        " id='p1' xml:lang='en'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1'"
        " node='https://conversations.im' ver='QqAcR/2p4PbAcomGk9XYZcdlrU0='/>"
        "<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='member'"
        " role='participant' jid='alice@example.org/phone'/><status code='110'/></x>"
        "</presence>"),
    # The rare case the fix is about: prefixed attributes in foreign namespaces.
    "prefixed attributes": (
        "<message to='bob@example.org' type='chat' id='x1' xml:lang='en'>"
        "<p xmlns='urn:p' xmlns:o='urn:o' xmlns:t='urn:t' o:a='1' o:b='2' t:a='3'/>"
        "<body>hi</body></message>"),
}


def _load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("baseline_stanza", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _best(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--baseline", help="path of another stanza.py to compare against")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--number", type=int, default=20000)
    args = ap.parse_args()
    impls: dict[str, Callable[..., str]] = {"current": st.serialize}
    if args.baseline:
        impls = {"baseline": _load(args.baseline).serialize, **impls}
    for case, xml in CASES.items():
        el = parse_fragment(xml)
        for content_ns in (st.NS_CLIENT, st.NS_SERVER):
            best = dict.fromkeys(impls, float("inf"))
            for _ in range(args.rounds):
                for label, ser in impls.items():
                    t = _best(lambda ser=ser, el=el, ns=content_ns: ser(el, ns), args.number)
                    best[label] = min(best[label], t)
            figures = "  ".join(f"{label} {t:.3f} us" for label, t in best.items())
            print(f"{case:22} {content_ns:14} {figures}")


if __name__ == "__main__":
    main()
