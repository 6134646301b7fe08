"""``python -m tests.fuzz``: fuzz the stream parser and the stanza path in process.

    .venv/bin/python -m tests.fuzz --inputs 1000000 --seed 1 --jobs 2
    .venv/bin/python -m tests.fuzz --seed 1 --index 4711          # one input, shown
    .venv/bin/python -m tests.fuzz --replay fuzz-findings/x.json  # a saved finding
    .venv/bin/python -m tests.fuzz --engine atheris -- -runs=100000 corpus-dir/

Prints inputs/s, the findings (de-duplicated by kind and innermost frame) and peak memory;
minimised reproducers go to ``--out`` (default ``fuzz-findings/``). Exit status 1 if
anything was found. ``--engine atheris`` runs libFuzzer's coverage-guided loop instead
(arguments after ``--`` go to libFuzzer; see tests/fuzz/coverage.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from twisted.logger import ILogObserver
from zope.interface import provider

if TYPE_CHECKING:
    from tests.fuzz.cases import Case
    from tests.fuzz.runner import Stats


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=None, help="stop after this long")
    ap.add_argument("--out", type=Path, default=Path("fuzz-findings"))
    ap.add_argument("--index", type=int, default=None, help="run and show one input")
    ap.add_argument("--replay", type=Path, default=None, help="run a saved case (.json)")
    ap.add_argument("--replay-bytes", type=Path, default=None,
                    help="run a libFuzzer input (crash-*, corpus file)")
    ap.add_argument("--engine", choices=("plain", "atheris"), default="plain")
    args = ap.parse_args(argv)

    if args.engine == "atheris":
        from tests.fuzz.coverage import main as coverage_main

        coverage_main(extra, args.seed)  # imports the server instrumented: before anything else
        return 0

    from twisted.logger import globalLogBeginner

    from tests.fuzz.cases import Case, make_case
    from tests.fuzz.runner import Fuzzer, run_parallel

    if args.index is not None or args.replay is not None or args.replay_bytes is not None:
        if args.replay_bytes is not None:
            case = Case.from_bytes(args.replay_bytes.read_bytes())
            if case is None:
                print("not a case in Case.to_bytes form")
                return 2
        elif args.replay is not None:
            case = Case.from_json(args.replay.read_text())
        else:
            case = make_case(args.seed, args.index)
        return _show(case)

    # Twisted prints critical events (log.failure) to stderr until logging is begun; the
    # oracle has its own observer, and the findings are reported below.
    globalLogBeginner.beginLoggingTo([_discard], discardBuffer=True, redirectStandardIO=False)
    print(f"fuzzing: seed {args.seed}, {args.inputs} inputs, {args.jobs} job(s)", flush=True)
    limit = args.minutes * 60 if args.minutes else None
    if args.jobs > 1:
        stats = run_parallel(args.seed, args.inputs, args.jobs, args.out, limit)
    else:
        fz = Fuzzer(args.out, log=lambda t: print(t, flush=True))

        def progress(s: Stats) -> None:
            print(f"... {s.inputs} inputs, {s.inputs / max(s.seconds, 1e-9):.0f}/s, "
                  f"{len(s.findings)} finding(s)", flush=True)
            s.save(args.out / "stats.json")

        stats = fz.fuzz(args.seed, range(args.inputs), progress, limit)
    _summary(stats)
    return 1 if stats.findings else 0


@provider(ILogObserver)
def _discard(event: dict[str, object]) -> None:
    pass


def _show(case: Case) -> int:
    from tests.fuzz.oracle import LogCapture, check
    from tests.fuzz.world import World

    world = World()
    print(f"mode {case.mode}, {len(case.chunks)} chunk(s), {case.size} bytes")
    for c in case.chunks[:50]:
        print("  >", repr(c[:300]))
    with LogCapture() as cap:
        t0 = time.process_time()
        out = world.run(case.mode, case.chunks)
        ms = (time.process_time() - t0) * 1000
        findings = check(out, cap.take())
    print(f"{ms:.1f} ms of CPU; server wrote {len(out.writes)} piece(s) "
          f"({out.prefix_writes} for the harness's prefix):")
    for w in out.writes[out.prefix_writes:][:50]:
        print("  <", repr(w[:300]))
    for f in findings:
        print(f"FINDING {f.signature}\n{f.detail}")
    return 1 if findings else 0


def _summary(s: Stats) -> None:
    rate = s.inputs / max(s.seconds, 1e-9)
    print(f"\n{s.inputs} inputs in {s.seconds:.0f} s ({rate:.0f} inputs/s); "
          f"peak RSS {s.peak_rss_kib / 1024:.0f} MiB per process; "
          f"largest traced per-connection peak {s.peak_traced / 1024:.0f} KiB; "
          f"most pending clock calls after a drain {s.max_pending_calls}")
    print("inputs by mode: " + ", ".join(f"{k} {v}" for k, v in sorted(s.by_mode.items())))
    print("slowest inputs (CPU ms, index, mode, bytes): " + "; ".join(
        f"{ms:.1f} #{i} {m} {n}" for ms, i, m, n in s.slowest[:5]))
    print(f"{len(s.findings)} distinct finding(s)")
    for sig, info in sorted(s.findings.items()):
        print(f"  {info['count']:>7} x {sig}  (seed {info['seed']} index {info['index']}, "
              f"reproduced on a fresh server: {info.get('reproduced_fresh', '?')}, "
              f"{info.get('file', 'not saved')})")


if __name__ == "__main__":
    sys.exit(main())
