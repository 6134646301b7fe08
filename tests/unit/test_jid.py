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


def test_overlong_parts_are_refused_before_precis(monkeypatch: pytest.MonkeyPatch) -> None:
    """A part too long to prepare into 1023 octets is refused without running the PRECIS
    profile over it (~3 us per character: a 256 KiB 'to' cost 0.7 s). The shortest raw
    part that could still fit is accepted and prepared as before."""
    from xmppd import jid

    seen: list[int] = []
    for name in ("_USERNAME", "_OPAQUE"):
        profile = getattr(jid, name)
        monkeypatch.setattr(jid, name, _Spy(profile, seen))
    for raw in ("u@localhost/" + "r" * 5000, "l" * 5000 + "@localhost",
                "u@localhost/" + "\u00e9" * 100000):
        with pytest.raises(JIDError, match="length out of range"):
            JID.parse(raw)
    assert max(seen) == 1  # only the localpart 'u'
    # Four code points that compose into one (NFC): 4 x 255 of them prepare to 765 octets.
    composed = "\u03c9\u0314\u0342\u0345" * 255
    assert JID.parse("u@localhost/" + composed).resource == "\u1fa7" * 255
    assert seen[-1] == len(composed) == 1020


class _Spy:
    def __init__(self, profile: object, seen: list[int]) -> None:
        self.profile, self.seen = profile, seen

    def enforce(self, value: str) -> str:
        self.seen.append(len(value))
        return self.profile.enforce(value)  # type: ignore[attr-defined, no-any-return]
