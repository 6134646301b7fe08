"""Turn ``py-spy record --format raw`` output into the two tables worth reading.

``own``: where the samples were taken (the leaf frame; C code called from Python, such as
expat or OpenSSL, is charged to the Python function that called it unless py-spy ran with
``--native``). ``cumulative``: the share of samples in which a function was on the stack.
Functions are merged across line numbers.

    py-spy record --pid PID --duration 15 --rate 200 --nonblocking --format raw -o prof.txt
    python -m bench.profile_summary prof.txt --top 25
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

_LINE = re.compile(r":\d+\)$")


def summarize(lines: list[str]) -> tuple[int, Counter[str], Counter[str]]:
    own: Counter[str] = Counter()
    cum: Counter[str] = Counter()
    total = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():  # py-spy cuts a stack it could not read completely
            continue
        n = int(count)
        total += n
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            cum[f] += n
    return total, own, cum


def _short(frame: str) -> str:
    return re.sub(r"\(/.*?/(site-packages|main)/", "(", frame)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_summary", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("raw", help="py-spy raw (collapsed stacks) file")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    with open(args.raw) as f:
        total, own, cum = summarize(f.readlines())
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    print(f"{total} samples")
    for title, counter in (("own time", own), ("cumulative", cum)):
        print(f"\n{title}:")
        for frame, n in counter.most_common(args.top):
            print(f"{100.0 * n / total:6.1f}%  {_short(frame)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
