"""XEP-0157 contact addresses: configuration checks and the disco#info form, in process."""

from __future__ import annotations

import pytest

from plugins.caps import verification_string
from tests.support.inproc import make_server
from xmppd import stanza as st
from xmppd.config import ConfigError, from_dict

DATA = "jabber:x:data"


@pytest.mark.parametrize("uri,message", [
    ("abuse@example.org", "is not a URI"),
    ("mailto:", "is not a URI"),
    ("mailto:nobody", "has no mail address"),
    ("xmpp:bad@@example.org", "does not name a JID"),
    ("xmpp://guest@example.org/bad@@x", "does not name a JID"),
    ("https://example.org/a b", "is not a URI"),
])
def test_bad_addresses_name_the_key(uri: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        from_dict({"hosts": {"example.org": {"contact": {"security": ["https://x.org/",
                                                                      uri]}}}})
    assert str(exc.value).startswith("hosts.example.org.contact.security[1]: ")
    assert message in str(exc.value)
    with pytest.raises(ConfigError, match=r"hosts.example.org.contact.phone: unknown key"):
        from_dict({"hosts": {"example.org": {"contact": {"phone": ["tel:+1"]}}}})


def test_good_addresses_load() -> None:
    cfg = from_dict({"hosts": {"example.org": {"contact": {"abuse": [
        "mailto:abuse@example.org", "xmpp:abuse@example.org", "xmpp:abuse@example.org?message",
        "xmpp://guest@example.org/support@example.org", "https://example.org/abuse",
        "tel:+15551234"]}}}})
    assert len(cfg.hosts["example.org"].contact.abuse) == 6


def _forms(server: object) -> list[st.Element]:
    disco = server.hosts["localhost"].plugin("disco")  # type: ignore[attr-defined]
    q = disco.info()
    return [x for x in st.children(q, "x", DATA)]


def test_form_follows_the_configuration() -> None:
    server = make_server(["disco", "caps", "contact"])
    assert _forms(server) == []  # nothing configured, no admins: nothing to say
    before = verification_string(server.hosts["localhost"].plugin("disco").info())  # type: ignore[union-attr]
    hc = server.config.hosts["localhost"]
    object.__setattr__(hc, "admins", ["boss@localhost"])
    (form,) = _forms(server)
    assert form.getAttribute("type") == "result"
    vars_ = [f.getAttribute("var") for f in st.children(form, "field", DATA)]
    assert vars_ == ["FORM_TYPE", "admin-addresses"]
    after = verification_string(server.hosts["localhost"].plugin("disco").info())  # type: ignore[union-attr]
    assert after != before  # XEP-0115: the form is part of the hashed identity
    server.hosts["localhost"].unload_registrations("contact")
    server.hosts["localhost"].plugins.pop("contact").teardown()
    assert _forms(server) == []  # unloaded: gone from disco
