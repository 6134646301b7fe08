"""RFC 7622 preparation and parsing."""

from __future__ import annotations

import pytest

from xmppd.jid import JID, JIDError, prepare_domain


@pytest.mark.parametrize("raw,expected", [
    ("juliet@example.com", "juliet@example.com"),
    ("juliet@example.com/foo", "juliet@example.com/foo"),
    ("JULIET@EXAMPLE.COM/Foo Bar", "juliet@example.com/Foo Bar"),  # resource keeps case
    ("example.com", "example.com"),
    ("example.com.", "example.com"),  # §3.2: trailing dot removed
    ("example.com/foo", "example.com/foo"),
    ("juliet@example.com/foo@bar", "juliet@example.com/foo@bar"),  # '@' after '/' is resource
    ("foo/bar@example.com", "foo/bar@example.com"),  # domain "foo", resource "bar@example.com"
    ("\u039a\u0391\u03a4\u0391@example.com", "\u03ba\u03b1\u03c4\u03b1@example.com"),
    ("juliet@[::1]", "juliet@[::1]"),
    ("juliet@192.168.1.1", "juliet@192.168.1.1"),
    ("user@ÉXAMPLE.com", "user@éxample.com"),
])
def test_valid(raw: str, expected: str) -> None:
    assert str(JID.parse(raw)) == expected


@pytest.mark.parametrize("raw", [
    "", "@example.com", "juliet@", "juliet@example.com/", "jul iet@example.com",
    "juliet@exa mple.com", "a\"b@example.com", "a:b@example.com", "a<b@example.com",
    "x" * 1024 + "@example.com", "juliet@[not-ipv6]", "\u0007@example.com",
])
def test_invalid(raw: str) -> None:
    with pytest.raises(JIDError):
        JID.parse(raw)


def test_parts_and_bare() -> None:
    j = JID.parse("Romeo@Montague.LIT/Orchard")
    assert (j.local, j.domain, j.resource) == ("romeo", "montague.lit", "Orchard")
    assert str(j.bare) == "romeo@montague.lit" and j.bare.is_bare
    assert j.bare_str == "romeo@montague.lit"
    assert j == JID.parse("romeo@montague.lit/Orchard")
    assert hash(j) == hash(JID.parse("ROMEO@montague.lit/Orchard"))
    assert j != JID.parse("romeo@montague.lit/orchard")
    assert str(j.with_resource("balcony")) == "romeo@montague.lit/balcony"


def test_make_prepares_parts() -> None:
    assert str(JID.make("ALICE", "Example.ORG", "r")) == "alice@example.org/r"
    with pytest.raises(JIDError):
        JID.make("a@b", "example.org")


def test_domain_fast_path_matches_idna() -> None:
    assert prepare_domain("Sub.Example.ORG") == "sub.example.org"
    with pytest.raises(JIDError):
        prepare_domain("-bad-.example")
