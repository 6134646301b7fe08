"""The published feature list (README table and DOAP file), generated from what the core and
each plugin declare in ``specs`` so that the documentation cannot claim what is not there."""

from __future__ import annotations

import re
from dataclasses import dataclass

from xmppd import __version__
from xmppd.config import DEFAULT_PLUGINS
from xmppd.plugin import load_class

# What the core itself implements (not a plugin).
CORE_SPECS: tuple[str, ...] = (
    "RFC 6120 (client streams, TLS, SASL, binding, stanza errors)",
    "RFC 7622 (addresses, PRECIS)",
    "RFC 5802 / RFC 7677 (SCRAM-SHA-1, SCRAM-SHA-256)",
    "RFC 7590 (TLS 1.2+)",
    "RFC 7395 (XMPP over WebSocket)",
    "XEP-0124 1.11.2 (BOSH at /http-bind)",
    "XEP-0156 1.4.0 (host-meta discovery)",
    "XEP-0206 1.4 (XMPP over BOSH)",
    "XEP-0368 1.1.0 (direct TLS)",
    "XEP-0478 0.2.0 (stream limits advertisement)",
    "XEP-0004 2.13.1 (data forms)",
    "XEP-0082 1.1.1 (date and time profiles)",
    "XEP-0227 1.1 (xmppd export/import/backup; MUC rooms as an extension)",
)


@dataclass(frozen=True)
class Entry:
    spec: str  # "XEP-0198" / "RFC 6121"
    version: str
    note: str
    provider: str  # "core" or the plugin name


def parse(spec: str, provider: str) -> Entry:
    m = re.match(r"^((?:XEP-\d{4})|(?:RFC \d+(?: / RFC \d+)?))\s*([\d.rc]*)\s*(?:\((.*)\))?",
                 spec)
    if not m:
        return Entry(spec, "", "", provider)
    return Entry(m.group(1), m.group(2), m.group(3) or "", provider)


def entries() -> list[Entry]:
    out = [parse(s, "core") for s in CORE_SPECS]
    try:
        from federation import SPECS as FEDERATION_SPECS
    except ImportError:
        FEDERATION_SPECS = ()  # noqa: N806
    out += [parse(s, "federation") for s in FEDERATION_SPECS]
    from components import SPECS as COMPONENT_SPECS

    out += [parse(s, "components") for s in COMPONENT_SPECS]
    for name in DEFAULT_PLUGINS:
        cls = load_class(name)
        out += [parse(s, cls.name or name) for s in cls.specs]

    def key(e: Entry) -> tuple[int, int, str]:
        kind = 0 if e.spec.startswith("RFC") else 1 if e.spec.startswith("XEP") else 2
        num = re.search(r"\d+", e.spec)
        return kind, int(num.group()) if num else 0, e.spec

    return sorted(out, key=key)


def markdown() -> str:
    lines = ["| specification | version | notes | where |", "| --- | --- | --- | --- |"]
    for e in entries():
        lines.append(f"| {e.spec} | {e.version} | {e.note} | {e.provider} |")
    return "\n".join(lines) + "\n"


def doap() -> str:
    """A DOAP description (https://xmpp.org/extensions/xep-0453.html style implements)."""
    impls = []
    for e in entries():
        if not e.spec.startswith("XEP-"):
            continue
        num = e.spec.split("-")[1]
        version = f"\n        <xmpp:version>{e.version}</xmpp:version>" if e.version else ""
        note = f"\n        <xmpp:note>{e.note}</xmpp:note>" if e.note else ""
        impls.append(
            "    <implements>\n      <xmpp:SupportedXep>\n"
            f"        <xmpp:xep rdf:resource='https://xmpp.org/extensions/xep-{num}.html'/>"
            f"\n        <xmpp:status>complete</xmpp:status>{version}{note}\n"
            "      </xmpp:SupportedXep>\n    </implements>")
    rfcs = sorted({e.spec for e in entries() if e.spec.startswith("RFC")})
    rfc_lines = [f"    <implements rdf:resource='https://www.rfc-editor.org/rfc/"
                 f"{r.split()[1]}'/>" for r in rfcs if "/" not in r]
    body = "\n".join(rfc_lines + impls)
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        "<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'\n"
        "         xmlns='http://usefulinc.com/ns/doap#'\n"
        "         xmlns:xmpp='https://linkmauve.fr/ns/xmpp-doap#'>\n"
        "  <Project>\n    <name>xmppd</name>\n"
        "    <shortdesc>A federated XMPP server in Python on Twisted</shortdesc>\n"
        "    <programming-language>Python</programming-language>\n"
        "    <category rdf:resource='https://linkmauve.fr/ns/xmpp-doap#category-server'/>\n"
        f"    <release><Version><revision>{__version__}</revision></Version></release>\n"
        f"{body}\n  </Project>\n</rdf:RDF>\n")
