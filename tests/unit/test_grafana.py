"""contrib/grafana/xmppd.json: a well-formed dashboard whose every query names a metric the
server exports (a renamed metric must not leave an empty panel behind)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.inproc import make_server
from xmppd.metrics import FAMILIES

DASHBOARD = Path(__file__).resolve().parents[2] / "contrib" / "grafana" / "xmppd.json"

# PromQL functions and aggregations the dashboard may use, and Grafana's label_values().
FUNCTIONS = {"sum", "min", "max", "avg", "count", "rate", "irate", "increase", "delta",
             "histogram_quantile", "topk", "bottomk", "abs", "clamp_min", "label_values"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "offset", "bool"}
_CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.$])([a-zA-Z_:][\w:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (with Grafana variables) selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\$\{?\w+\}?", "", text)  # $__rate_interval, ${datasource}
    text = _CLAUSE.sub("", text)
    names = set()
    for ident, call in _IDENT.findall(text):
        if call:
            assert ident in FUNCTIONS, f"unknown function {ident}() in {expr}"
        elif ident not in KEYWORDS:
            names.add(ident)
    return names


def exported() -> set[str]:
    """Sample names a server exposes, plus those of families it only exports sometimes."""
    server = make_server()
    assert server.metrics is not None
    server.metrics.refresh()
    names = {s.name for fam in server.metrics.registry.collect() for s in fam.samples}
    suffixes = {"counter": ("_total",), "gauge": ("",), "info": ("_info",),
                "histogram": ("_bucket", "_sum", "_count")}
    for name, (kind, _doc, _labels) in FAMILIES.items():
        names.update(name + s for s in suffixes[kind])
    return names


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def queries(dash: dict[str, Any]) -> list[str]:
    out = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            out.append(var["query"]["query"])
    return out


def test_metric_names_parser() -> None:
    assert metric_names('histogram_quantile(0.99, sum by (le, operation) (rate('
                        'xmppd_x_bucket{instance=~"$instance"}[$__rate_interval])))') == {
        "xmppd_x_bucket"}
    assert metric_names("sum(rate(a_total[5m])) / sum(rate(b_count[5m]))") == {"a_total",
                                                                             "b_count"}
    assert metric_names("label_values(xmppd_build_info, instance)") == {"xmppd_build_info",
                                                                       "instance"}
    with pytest.raises(AssertionError):
        metric_names("sumx(a)")


def test_dashboard_is_a_grafana_dashboard() -> None:
    dash = dashboard()
    assert dash["title"] and dash["uid"] and isinstance(dash["schemaVersion"], int)
    names = {v["name"] for v in dash["templating"]["list"]}
    assert names == {"datasource", "instance"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]


def test_every_query_selects_exported_metrics() -> None:
    available = exported()
    dash = dashboard()
    used: set[str] = set()
    for expr in queries(dash):
        names = metric_names(expr) - {"instance"}  # label_values()'s label argument
        assert names, f"{expr!r} selects no metric"
        missing = names - available
        assert not missing, f"{expr!r} uses {sorted(missing)}, which the server does not export"
        used |= names
    # Every xmppd family is on the dashboard somewhere.
    for family in FAMILIES:
        assert any(n.startswith(family) for n in used), f"{family} is not on the dashboard"
