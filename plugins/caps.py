"""XEP-0115 Entity Capabilities of the server itself: the verification string of the
domain's disco#info (§5.1, SHA-1), offered as a ``<c/>`` stream feature after
authentication (§6.3) and answered as the disco#info node "<node>#<ver>" (§6.2).

The string is recomputed from the disco plugin's current answer each time it is needed (a
few dozen features: microseconds), so features added at run time are always reflected.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from twisted.words.xish.domish import Element

from plugins.disco import NS_INFO, Disco
from xmppd import forms
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.plugin import Plugin

NS = "http://jabber.org/protocol/caps"
NS_DATA = forms.NS


@dataclass(frozen=True)
class Options:
    node: str = "urn:xmppd:caps"  # identifies the software (XEP-0115 §4 'node')


def _octets(value: str) -> bytes:
    return value.encode("utf-8")  # §5.1: "i;octet" collation is comparing UTF-8 bytes


def verification_string(info: Element) -> str:
    """§5.1 generation method over a disco#info <query/> element, hashed with SHA-1."""
    identities = sorted(
        ((i.getAttribute("category", ""), i.getAttribute("type", ""), st.lang(i) or "",
          i.getAttribute("name", "")) for i in st.children(info, "identity", NS_INFO)),
        key=lambda t: tuple(_octets(p) for p in t))
    s = [f"{c}/{t}/{lang}/{name}<" for c, t, lang, name in identities]
    features = sorted({f.getAttribute("var", "") for f in st.children(info, "feature", NS_INFO)},
                      key=_octets)
    s.extend(f"{var}<" for var in features)
    forms: list[tuple[str, list[tuple[str, list[str]]]]] = []
    for x in st.children(info, "x", NS_DATA):
        form_type = None
        fields: list[tuple[str, list[str]]] = []
        for field in st.children(x, "field", NS_DATA):
            var = field.getAttribute("var", "")
            values = [st.text(v) for v in st.children(field, "value", NS_DATA)]
            if var == "FORM_TYPE":
                if field.getAttribute("type") == "hidden" and values:
                    form_type = values[0]
            else:
                fields.append((var, sorted(values, key=_octets)))
        if form_type is not None:  # §5.4 step 3.6: forms without a hidden FORM_TYPE are ignored
            forms.append((form_type, sorted(fields, key=lambda f: _octets(f[0]))))
    for form_type, fields in sorted(forms, key=lambda f: _octets(f[0])):
        s.append(f"{form_type}<")
        for var, values in fields:
            s.append(f"{var}<")
            s.extend(f"{v}<" for v in values)
    digest = hashlib.sha1("".join(s).encode("utf-8")).digest()
    return base64.b64encode(digest).decode("ascii")


class Caps(Plugin):
    name = "caps"
    specs = ("XEP-0115 1.6.0 (the server's own, as a stream feature)",)
    features = (NS,)  # §7
    depends = ("disco",)
    Options = Options

    def setup(self) -> None:
        self.disco = self.host.require(Disco)
        self.disco.add_info_node(self.node_info)
        self.host.on(H.STREAM_FEATURES, self.stream_feature)

    def teardown(self) -> None:
        self.disco.remove_info_node(self.node_info)

    def ver(self) -> str:
        return verification_string(self.disco.info())

    def stream_feature(self, ev: H.FeaturesEvent) -> None:
        """§6.3: the server's capabilities as a stream feature (after authentication)."""
        if ev.stage == "post-auth":
            st.add(ev.features, "c", NS, attrs={
                "hash": "sha-1", "node": self.options.node, "ver": self.ver()})

    def node_info(self, node: str) -> Element | None:
        """§6.2: disco#info of "<node>#<ver>" is the domain's disco#info, with the node."""
        info = self.disco.info()
        if node != f"{self.options.node}#{verification_string(info)}":
            return None
        info.attributes["node"] = node
        return info
