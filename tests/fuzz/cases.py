"""Cases: a starting state (``mode``) and the bytes fed from there, as TCP reads or as
WebSocket messages. ``make_case(seed, index)`` is a pure function, so any input of any run
can be rebuilt from the run's seed and the input's number.
"""

from __future__ import annotations

import base64
import functools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.fuzz.grammar import NS, Gen
from tests.fuzz.world import DOMAIN, MODES, REMOTE, WS_OPEN, c2s_header, s2s_header


@dataclass
class Case:
    mode: str
    chunks: list[bytes]
    origin: dict[str, object] = field(default_factory=dict)  # seed, index, mutations

    @property
    def size(self) -> int:
        return sum(len(c) for c in self.chunks)

    def to_json(self) -> str:
        return json.dumps({
            "mode": self.mode, "origin": self.origin,
            "chunks": [base64.b64encode(c).decode() for c in self.chunks],
            "preview": [c[:400].decode("utf-8", "replace") for c in self.chunks[:40]],
        }, indent=1)

    def to_bytes(self) -> bytes:
        """Compact form for libFuzzer corpora: mode index, then length-prefixed chunks."""
        out = bytearray([MODES.index(self.mode)])
        for c in self.chunks:
            out += len(c).to_bytes(4, "big") + c
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> Case | None:
        """Inverse of to_bytes; None if ``data`` is not in that form."""
        if not data or data[0] >= len(MODES):
            return None
        chunks, i = [], 1
        while i < len(data):
            n = int.from_bytes(data[i:i + 4], "big")
            if i + 4 + n > len(data):
                return None
            chunks.append(data[i + 4:i + 4 + n])
            i += 4 + n
        return cls(MODES[data[0]], chunks)

    @classmethod
    def from_json(cls, text: str) -> Case:
        raw = json.loads(text)
        return cls(raw["mode"], [base64.b64decode(c) for c in raw["chunks"]],
                   raw.get("origin", {}))


def is_ws(mode: str) -> bool:
    return mode.startswith("ws")


# -- generation ------------------------------------------------------------------------------
def _stream_header(g: Gen, s2s: bool) -> str:
    """Mostly a good header; sometimes one wrong in a way RFC 6120 §4.9.3 names."""
    r = g.r
    good = (s2s_header() if s2s else c2s_header()).decode()
    if not g.odd(1.5):
        return good
    ns = "jabber:server" if s2s else "jabber:client"
    return r.choice([
        good.replace(f"to='{DOMAIN}'", r.choice(["to='unknown.example'", "", "to=''",
                                                  "to='LOCALHOST'", "to='localhost.'",
                                                  "to='ex\u00e4mple.net'", "to='a@localhost'"])),
        good.replace("version='1.0'", r.choice(["", "version='2.0'", "version='1.1'",
                                                 "version='x'", "version='0.9'"])),
        good.replace(f"xmlns='{ns}'", r.choice(["xmlns='jabber:server'", "xmlns='jabber:client'",
                                                 "", "xmlns='urn:x'"])),
        good.replace("stream:stream", "s:stream").replace("xmlns:stream", "xmlns:s"),
        good.replace("http://etherx.jabber.org/streams", "urn:wrong"),
        good.replace("<?xml version='1.0'?>", r.choice(["", "<?xml version='1.0' encoding="
                                                         "'ISO-8859-1'?>", "<?xml version='1.1'?>",
                                                         "\ufeff<?xml version='1.0'?>"])),
        good.replace("version='1.0'>", "version='1.0' xml:lang='" + g.word() + "'>"),
        good.replace("version='1.0'>", "version='1.0' from='" + g.jid() + "'>"),
        good[:-1] + "/>",
    ])


def _body(g: Gen, n: int, nonzas: bool) -> list[str]:
    out = []
    for _ in range(n):
        k = g.r.random()
        if nonzas and k < 0.12:
            out.append(g.nonza())
        elif k < 0.97:
            out.append(g.stanza())
        else:
            out.append(g.r.choice([" ", "\n", "  \r\n\t"]))  # keepalive whitespace
    return out


def generate(rng: random.Random, mode: str) -> list[str]:
    """A plausible sequence of top-level pieces for a connection starting in ``mode``."""
    r = rng
    ws = is_ws(mode)
    g = Gen(r, chaos=r.choice([0.0, 0.05, 0.15, 0.3, 0.6]), ns_attr="jabber:client" if ws else "",
            s2s=mode == "s2s-auth")
    n = r.choice([1, 1, 2, 3, 4, 6, 10, 20])
    units: list[str] = []
    close = "</stream:stream>" if not ws else f"<close xmlns='{NS['framing']}'/>"
    if mode in ("c2s-bound", "ws-bound"):
        units += _body(g, n, nonzas=True)
        if r.random() < 0.1:
            units.insert(r.randrange(len(units) + 1), WS_OPEN if ws else c2s_header().decode())
    elif mode == "s2s-auth":
        for _ in range(n):
            k = r.random()
            if k < 0.8:
                units.append(g.stanza())
            elif k < 0.9:
                units.append(_dialback(g))
            else:
                units.append(g.nonza())
    elif mode.startswith("s2s"):
        if mode == "s2s":
            units.append(_stream_header(g, s2s=True))
            if r.random() < 0.5:
                units += [g.el("starttls", NS["tls"]), _stream_header(g, s2s=True)]
        else:
            units.append(_stream_header(g, s2s=True))
        for _ in range(n):
            k = r.random()
            if k < 0.35:
                units.append(_dialback(g))
            elif k < 0.55:
                units.append(_external(g))
            elif k < 0.6:
                units.append(_stream_header(g, s2s=True))
            else:
                units.append(g.stanza().replace("jabber:client", "jabber:server"))
    else:  # pre-auth c2s / WebSocket
        if ws:
            units.append(WS_OPEN if not g.odd(1.5) else r.choice([
                WS_OPEN.replace("version='1.0'", ""), WS_OPEN.replace(DOMAIN, "nope.example"),
                f"<open xmlns='{NS['framing']}'/>", WS_OPEN.replace(NS["framing"], "urn:x"),
                "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='localhost'"
                " version='1.0'>", c2s_header().decode(), "<?xml version='1.0'?>" + WS_OPEN]))
        else:
            units.append(_stream_header(g, s2s=False))
            if mode == "c2s-plain" and r.random() < 0.6:
                units += [g.el("starttls", NS["tls"]), _stream_header(g, s2s=False)]
        for _ in range(n):
            k = r.random()
            if k < 0.35:
                units.append(g.sasl())
            elif k < 0.5:
                # A real login, then a restart and binding: the whole negotiation fuzzed.
                user = r.choice(["alice", "bob", "nobody", "alice\u0000x"])
                token = base64.b64encode(f"\0{user}\0pw".encode()).decode()
                units.append(f"<auth xmlns='{NS['sasl']}' mechanism='PLAIN'>{token}</auth>")
                units.append(WS_OPEN if ws else _stream_header(g, s2s=False))
                if r.random() < 0.8:
                    xmlns = " xmlns='jabber:client'" if ws else ""
                    res = r.choice(["", "<resource>r</resource>"])
                    units.append(g.iq() if r.random() < 0.2 else
                                 f"<iq type='set' id='b'{xmlns}><bind xmlns='{NS['bind']}'>"
                                 f"{res}</bind></iq>")
            elif k < 0.6:
                units.append(g.el("iq", "jabber:client" if ws else None,
                                  {"type": r.choice(["get", "set"]), "id": g.ident()},
                                  g.registration()))
            elif k < 0.65:
                units.append(g.el("starttls", NS["tls"]))
            elif k < 0.7:
                units.append(WS_OPEN if ws else _stream_header(g, s2s=False))
            else:
                units.append(g.stanza() if r.random() < 0.7 else g.nonza())
    if r.random() < 0.5:
        units.append(close)
    return units


def _dialback(g: Gen) -> str:
    r = g.r
    name = r.choice(["result", "result", "verify"])
    frm = r.choice([REMOTE, REMOTE, "other.example", "", DOMAIN, "bad domain"])
    to = r.choice([DOMAIN, DOMAIN, "conference.localhost", "unknown.example", ""])
    key = r.choice(["valid-1", "invalid-1", "unknown-key", "", "x" * 500])
    attrs: dict[str, str | None] = {"from": frm or None, "to": to or None}
    if name == "verify" or r.random() < 0.1:
        attrs["id"] = r.choice(["abc", "", None])
    if r.random() < 0.1:
        attrs["type"] = r.choice(["valid", "invalid", "error"])
    return g.el(f"db:{name}", None, attrs, key) if r.random() < 0.9 else g.el(
        name, NS["db"], attrs, key)


def _external(g: Gen) -> str:
    r = g.r
    body = r.choice(["", "=", base64.b64encode(REMOTE.encode()).decode(),
                     base64.b64encode(b"other.example").decode(), "!!", "/w=="])
    if r.random() < 0.7:
        return g.el("auth", NS["sasl"], {"mechanism": r.choice(["EXTERNAL", "EXTERNAL", "PLAIN"])},
                    body)
    return g.el(r.choice(["response", "abort"]), NS["sasl"], children=body)


# -- mutation --------------------------------------------------------------------------------
TOKENS = [
    b"<!--x-->", b"<?pi x?>", b"<!DOCTYPE s [<!ENTITY e 'x'>]>", b"&e;", b"&#0;", b"&#xD800;",
    b"&#x110000;", b"&#65;", b"<![CDATA[", b"]]>", b"\xc0\x80", b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80", b"\xef\xbb\xbf", b"\xff\xfe", b"\xe2\x82", b"\x00", b"\x0c",
    b"<?xml version='1.0' encoding='UTF-16'?>", b" xmlns:p='urn:x'", b"p:", b"xml:",
    b" xmlns=''", b" xmlns='jabber:server'", b" xmlns:stream='urn:y'", b"</stream:stream>",
    b"<stream:stream>", b"<a", b"</a>", b"&amp;", b"&lt;&", b"\r\n", b"\t", b"<", b">", b"/>",
    b"='", b"'", b'"', b" x='1'", b" to=''", b" from='@'", b" type='error'", b" id=''",
    b"<stream:features/>", b"<error/>", b"<body>", b"</body>", b"xmlns:xml='urn:bad'",
    b" xmlns:xmlns='urn:x'", b"&#x1F600;", b"\xf0\x9f\x98", b"\x80",
]
MAX_STANZA = 262144
MAX_CASE = 1 << 20  # bytes; larger inputs only cost time (the limits they test are 256 KiB)


# Operators by weight: the expensive ones (huge inputs) are rarer.
OPS = (["flip"] * 4 + ["byte"] * 4 + ["token"] * 8 + ["delete"] * 4 + ["dup"] * 3
       + ["truncate"] * 3 + ["splice"] * 3 + ["swap"] * 2 + ["case"] * 2 + ["repeat", "huge"])


def mutate(rng: random.Random, data: bytes, donor: bytes | Callable[[], bytes],
           ops: list[str]) -> bytes:
    """One byte-level mutation of ``data``; its name is appended to ``ops``. ``donor`` (or
    a function making it) is another input to splice from."""
    r = rng
    n = len(data)
    op = r.choice(OPS)
    ops.append(op)
    pos = r.randint(0, n)
    if op == "flip" and n:
        i = r.randrange(n)
        return data[:i] + bytes([data[i] ^ (1 << r.randrange(8))]) + data[i + 1:]
    if op == "byte" and n:
        i = r.randrange(n)
        return data[:i] + r.choice(b"<>/&'\"\x00\xff\x80 =:;?!-[]#") .to_bytes(1, "big") + (
            data[i + 1:])
    if op == "token":
        return data[:pos] + r.choice(TOKENS) + data[pos:]
    if op == "delete" and n:
        end = min(n, pos + r.choice([1, 2, 5, 20, 200]))
        return data[:pos] + data[end:]
    if op == "dup" and n:
        a = r.randrange(n)
        b = min(n, a + r.choice([1, 10, 100, 1000]))
        return data[:pos] + data[a:b] * r.choice([1, 2, 10]) + data[pos:]
    if op == "truncate":
        return data[:pos]
    if op == "splice":
        donor = donor() if callable(donor) else donor
        if not donor:
            return data
        a = r.randrange(len(donor))
        b = min(len(donor), a + r.randint(1, 400))
        return data[:pos] + donor[a:b] + data[pos:]
    if op == "swap" and n > 2:
        a, b = sorted(r.sample(range(n), 2))
        c = min(n, b + (b - a))
        return data[:a] + data[b:c] + data[a:b] + data[c:]
    if op == "repeat" and n:
        # A whole element many times: queues, rate limits, MAX_QUEUE back-pressure.
        start = data.rfind(b"<", 0, pos)
        end = data.find(b">", pos)
        if start >= 0 and end > start:
            return data[:end + 1] + data[start:end + 1] * r.choice([10, 100, 300]) + data[end + 1:]
        return data
    if op == "huge":
        fill = r.choice([b"A", b"\xc3\xa9", b"<a>", b"&amp;", b" "])
        size = r.choice([5000, 70000, MAX_STANZA - 200, MAX_STANZA + 100])
        return data[:pos] + fill * (size // len(fill)) + data[pos:]
    if op == "case" and n:
        i = r.randrange(n)
        j = min(n, i + 20)
        return data[:i] + data[i:j].swapcase() + data[j:]
    return data


def _capped(units: list[bytes]) -> list[bytes]:
    out, total = [], 0
    for u in units:
        if total + len(u) > MAX_CASE:
            out.append(u[:MAX_CASE - total])
            break
        out.append(u)
        total += len(u)
    return out


def chunk_stream(rng: random.Random, data: bytes, units: list[bytes]) -> list[bytes]:
    """How TCP delivers it: per unit, at random split points, byte by byte, or all at once."""
    r = rng
    how = r.random()
    if how < 0.35 and b"".join(units) == data:
        return [u for u in units if u]
    if how < 0.5 or len(data) < 2:
        return [data]
    if how < 0.62 and len(data) <= 3000:
        return [data[i:i + 1] for i in range(len(data))]
    cuts = sorted(r.sample(range(1, len(data)), min(len(data) - 1, r.choice([1, 2, 5, 20, 100]))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def make_case(seed: int, index: int, mutation_rate: float = 0.5) -> Case:
    """The ``index``-th input of the run seeded ``seed``."""
    r = random.Random(f"{seed}:{index}")
    mode = r.choice(MODES)
    units = [u.encode() for u in generate(r, mode)]
    ops: list[str] = []
    if r.random() < mutation_rate:
        @functools.cache
        def donor() -> bytes:
            donor_rng = random.Random(f"{seed}:{index}:donor")
            return b"".join(u.encode() for u in generate(donor_rng, donor_rng.choice(MODES)))

        count = r.choice([1, 1, 1, 2, 3, 8])
        if is_ws(mode):
            for _ in range(count):
                if not units:
                    break
                k = r.random()
                i = r.randrange(len(units))
                if k < 0.6:
                    units[i] = mutate(r, units[i], donor, ops)
                elif k < 0.7 and len(units) > 1:
                    ops.append("ws-merge")
                    j = min(i + 1, len(units) - 1)
                    units[i:j + 1] = [b"".join(units[i:j + 1])]
                elif k < 0.8 and len(units[i]) > 1:
                    ops.append("ws-split")
                    cut = r.randrange(1, len(units[i]))
                    units[i:i + 1] = [units[i][:cut], units[i][cut:]]
                elif k < 0.9:
                    ops.append("ws-dup")
                    units.insert(i, units[i])
                else:
                    ops.append("ws-drop")
                    del units[i]
            chunks = _capped(units)
        else:
            data = b"".join(units)
            for _ in range(count):
                data = mutate(r, data, donor, ops)[:MAX_CASE]
            chunks = chunk_stream(r, data, [])
    else:
        chunks = _capped(units) if is_ws(mode) else chunk_stream(r, b"".join(units), units)
    return Case(mode, chunks, {"seed": seed, "index": index, "ops": ops})
