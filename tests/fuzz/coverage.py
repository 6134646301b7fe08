"""Coverage-guided engine: libFuzzer through atheris (``pip install atheris``), with the
grammar and the mutators of this package as its custom mutator.

libFuzzer keeps the inputs that reach new edges of the instrumented server code (xmppd,
federation, plugins, storage) and hands them back to ``mutate`` here, which either
decodes them as a Case and applies a structure-aware mutation, or swaps in a freshly
generated case. A finding raises, so libFuzzer writes the input as ``crash-<sha1>`` (a
Case in ``Case.to_bytes`` form; ``python -m tests.fuzz --replay-bytes FILE`` shows it).

Instrumentation costs: expect a few times fewer inputs per second than the plain engine.
"""

from __future__ import annotations

import random
import sys

RECYCLE = 20000  # inputs per in-process server


def main(libfuzzer_args: list[str], seed: int) -> None:
    import atheris

    with atheris.instrument_imports(include=["xmppd", "federation", "plugins", "storage"]):
        import federation.inbound  # noqa: F401
        import xmppd.c2s
        import xmppd.websocket  # noqa: F401
        from tests.fuzz.cases import Case, make_case, mutate
        from tests.fuzz.known import known
        from tests.fuzz.oracle import LogCapture, check
        from tests.fuzz.world import World
        for mod in list(sys.modules):
            if mod.startswith("plugins."):
                __import__(mod)

    worlds = [World()]
    capture = LogCapture()
    capture.__enter__()
    runs = [0]

    def test_one(data: bytes) -> None:
        case = Case.from_bytes(data)
        if case is None:
            return
        runs[0] += 1
        world = worlds[0]
        out = world.run(case.mode, case.chunks)
        # Time and memory are measured by the plain engine (instrumentation distorts both);
        # known findings (tests/fuzz/known.py) would stop libFuzzer at the first one.
        findings = [f for f in check(out, capture.take())
                    if f.kind not in ("slow", "memory") and known(f.signature) is None]
        if findings:
            raise AssertionError("\n\n".join(f"{f.signature}\n{f.detail}" for f in findings))
        if runs[0] % 5000 == 0:
            world.drain()
        if runs[0] % RECYCLE == 0:
            # Archives and offline stores grow with every input: a new server now and then
            # keeps memory bounded (as in the plain engine).
            worlds[0] = World()

    def custom_mutator(data: bytes, max_size: int, mseed: int) -> bytes:
        r = random.Random(mseed)
        case = Case.from_bytes(data)
        if case is None or not case.chunks or r.random() < 0.2:
            case = make_case(seed, mseed)
        else:
            i = r.randrange(len(case.chunks))
            donor = make_case(seed, mseed + 1).to_bytes()[1:]
            ops: list[str] = []
            case.chunks[i] = mutate(r, case.chunks[i], donor, ops)
            if r.random() < 0.1 and len(case.chunks) > 1:
                j = r.randrange(len(case.chunks) - 1)
                case.chunks[j:j + 2] = [case.chunks[j] + case.chunks[j + 1]]
        out = case.to_bytes()
        return out[:max_size] if len(out) <= max_size else Case(
            case.mode, [b"".join(case.chunks)[:max_size - 5]]).to_bytes()

    atheris.Setup([sys.argv[0], *libfuzzer_args], test_one, custom_mutator=custom_mutator)
    atheris.Fuzz()
