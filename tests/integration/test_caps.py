"""The server's own entity capabilities (XEP-0115): stream feature and caps node."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest

from plugins.caps import verification_string
from tests.support.client import run
from tests.support.raw import NS_SASL, RawStream, q, stanza_error
from tests.support.server import ServerProcess
from xmppd.xmlparser import parse_fragment

pytestmark = pytest.mark.integration

CAPS = "http://jabber.org/protocol/caps"
INFO = "http://jabber.org/protocol/disco#info"


def test_caps_stream_feature_matches_disco_info(server: ServerProcess) -> None:
    jid, pw = server.new_user("caps")

    async def body() -> None:
        raw = await RawStream.open(server.c2s_port)
        await raw.open_stream()
        await raw.starttls(str(server.ca.ca_file))
        features = await raw.open_stream()
        assert features.find(q(CAPS, "c")) is None  # offered after authentication (§6.3)
        token = base64.b64encode(f"\0{jid.split('@')[0]}\0{pw}".encode()).decode()
        await raw.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>")
        assert (await raw.read()).tag == q(NS_SASL, "success")
        features = await raw.open_stream()
        c = features.find(q(CAPS, "c"))
        assert c is not None
        assert c.get("hash") == "sha-1" and c.get("node") == "urn:xmppd:caps"
        await raw.bind("r")
        res = await raw.iq(f"<query xmlns='{INFO}'/>", to="localhost", id_="d1")
        info = res.find(q(INFO, "query"))
        assert CAPS in {f.get("var") for f in info.findall(q(INFO, "feature"))}
        # the advertised ver is the §5.1 hash of what disco#info says
        assert c.get("ver") == verification_string(parse_fragment(ET.tostring(info).decode()))
        # the caps node answers with the same information (§6.2)
        node = f"urn:xmppd:caps#{c.get('ver')}"
        res = await raw.iq(f"<query xmlns='{INFO}' node='{node}'/>", to="localhost", id_="d2")
        by_node = res.find(q(INFO, "query"))
        assert by_node.get("node") == node
        assert sorted(f.get("var") for f in by_node.findall(q(INFO, "feature"))) == sorted(
            f.get("var") for f in info.findall(q(INFO, "feature")))
        assert len(by_node.findall(q(INFO, "identity"))) == len(info.findall(
            q(INFO, "identity")))
        # any other node is unknown; plain disco#info is unchanged
        for i, other in enumerate(("urn:xmppd:caps#AAAA", "urn:other#" + c.get("ver"))):
            res = await raw.iq(f"<query xmlns='{INFO}' node='{other}'/>", to="localhost",
                               id_=f"n{i}")
            assert stanza_error(res) == ("cancel", "item-not-found")
        raw.close()

    run(body())
