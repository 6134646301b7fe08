"""The README's specification table and xmppd.doap are generated from the code; keep them so."""

from __future__ import annotations

from pathlib import Path

from xmppd import features

ROOT = Path(__file__).resolve().parents[2]


def test_readme_table_is_current() -> None:
    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- features:start -->\n") + len("<!-- features:start -->\n")
    end = text.index("<!-- features:end -->")
    assert text[start:end] == features.markdown(), (
        "README.md is stale: paste the output of `xmppd features` between the markers")


def test_doap_is_current() -> None:
    assert (ROOT / "xmppd.doap").read_text() == features.doap(), (
        "xmppd.doap is stale: regenerate it with `xmppd features --doap > xmppd.doap`")


def test_every_plugin_declares_specs() -> None:
    assert all(e.spec for e in features.entries())
    assert any(e.spec == "XEP-0198" and e.provider == "smacks" for e in features.entries())


def test_readme_command_table_names_every_command() -> None:
    """Each `xmppd` subcommand (the administrative ones come from xmppd/ops.py) has a row
    in the README's command table, and the table names no command that does not exist."""
    import argparse
    import re

    from xmppd.__main__ import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = set(sub.choices)
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| command | what it does |"):]
    table = table[:table.index("\n\n")]
    documented = set()
    for row in table.splitlines()[2:]:
        first_cell = row.split("|")[1]
        documented |= {m.split()[0] for m in re.findall(r"`([^`]+)`", first_cell)
                       if not m.startswith("[")}
    assert documented == commands, (commands - documented, documented - commands)
