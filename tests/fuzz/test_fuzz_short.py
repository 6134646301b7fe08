"""A short fuzzing run for CI: a few thousand generated and mutated inputs from a fixed
seed through every starting state, plus every saved reproducer in tests/fuzz/corpus/.
Fails on any finding not listed in tests/fuzz/known.py. The long run: ``python -m
tests.fuzz`` (docs/DEVELOPING.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

import xmppd.accounts
from tests.fuzz.cases import Case
from tests.fuzz.known import known
from tests.fuzz.runner import Fuzzer

CORPUS = Path(__file__).parent / "corpus"
SEED = 20261207
INPUTS = 3000


@pytest.fixture()
def fuzzer(monkeypatch: pytest.MonkeyPatch) -> Fuzzer:
    # The harness runs PBKDF2 inline: put the real thread helper back afterwards.
    monkeypatch.setattr(xmppd.accounts, "threads", xmppd.accounts.threads)
    return Fuzzer(out_dir=None, mem_every=250, minimise=False, log=lambda text: None)


def _new(fz: Fuzzer) -> list[str]:
    return [f"{sig} (seed {info['seed']} index {info['index']}, {info['mode']}):\n"
            f"{info['detail'][-1500:]}"
            for sig, info in fz.stats.findings.items() if known(sig) is None]


def test_generated_and_mutated_inputs(fuzzer: Fuzzer) -> None:
    stats = fuzzer.fuzz(SEED, range(INPUTS))
    assert stats.inputs == INPUTS
    assert len(stats.by_mode) == 8  # every starting state was exercised
    new = _new(fuzzer)
    assert not new, "\n\n".join(new)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.json")), ids=lambda p: p.stem)
def test_saved_reproducers(fuzzer: Fuzzer, path: Path) -> None:
    """Inputs that once found a defect (fixed since) stay fixed."""
    case = Case.from_json(path.read_text())
    findings, _ms = fuzzer.run_case(case)
    new = [f"{f.signature}\n{f.detail[-1500:]}" for f in findings if known(f.signature) is None]
    assert not new, "\n\n".join(new)
