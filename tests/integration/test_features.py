"""Stream and disco features are advertised exactly for the plugins that are loaded."""

from __future__ import annotations

import pytest

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.client import run
from tests.support.raw import RawStream
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
INFO = "http://jabber.org/protocol/disco#info"


async def advertised(srv: ServerProcess) -> tuple[set[str], set[str], set[str]]:
    """(stream feature namespaces, domain disco features, account disco features)."""
    jid, pw = srv.new_user()
    raw = await RawStream.open(srv.c2s_port)
    feats = await raw.authenticate(str(srv.ca.ca_file), jid.split("@")[0], pw)
    stream = {c.tag.split("}")[0][1:] for c in feats}
    await raw.bind("r")
    domain = await raw.iq(f"<query xmlns='{INFO}'/>", to="localhost", id_="d1")
    account = await raw.iq(f"<query xmlns='{INFO}'/>", to=jid, id_="d2")
    raw.close()

    def vars_(iq: object) -> set[str]:
        return {f.get("var", "") for f in iq.iter(f"{{{INFO}}}feature")}  # type: ignore[attr-defined]

    return stream, vars_(domain), vars_(account)


def test_all_features_when_enabled(ca: CertAuthority,
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    gen = start_server(tmp_path_factory.mktemp("feat-all"), "sqlite", ca)
    srv = next(gen)
    try:
        stream, domain, account = run(advertised(srv))
        assert {"urn:xmpp:sm:3", "urn:xmpp:csi:0", "urn:xmpp:features:rosterver",
                "urn:xmpp:features:pre-approval", "urn:xmpp:stream-limits:0"} <= stream
        assert {"urn:xmpp:carbons:2", "msgoffline", "urn:xmpp:ping"} <= domain
        assert {"urn:xmpp:mam:2", "urn:xmpp:mam:2#extended", "urn:xmpp:sid:0",
                "urn:xmpp:push:0"} <= account
        assert "urn:xmpp:push:0" not in domain  # XEP-0357 §4.1: on the account only
    finally:
        gen.close()


def test_nothing_advertised_that_is_not_loaded(ca: CertAuthority,
                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    gen = start_server(tmp_path_factory.mktemp("feat-min"), "sqlite", ca,
                       config={"plugins": {"enabled": ["disco"]}})
    srv = next(gen)
    try:
        stream, domain, account = run(advertised(srv))
        assert stream == {"urn:ietf:params:xml:ns:xmpp-bind",
                          "urn:ietf:params:xml:ns:xmpp-session", "urn:xmpp:stream-limits:0"}
        assert domain == {INFO, "http://jabber.org/protocol/disco#items"}
        assert account == {INFO, "http://jabber.org/protocol/disco#items"}
    finally:
        gen.close()
