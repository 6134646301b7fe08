"""XEP-0115 processing for PEP's filtered notifications: §5.4 checks, the verified cache,
per-JID answers for what cannot be verified, and shared in-flight queries."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed

from plugins.caps import verification_string
from plugins.pep.caps import Caps, CapsResolver, notify_nodes, well_formed
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.iq import IqTimeout
from xmppd.jid import JID
from xmppd.xmlparser import parse_fragment

INFO = "http://jabber.org/protocol/disco#info"
OWNER = JID.parse("juliet@capulet.lit")
ROMEO = JID.parse("romeo@montague.lit/orchard")
BENVOLIO = JID.parse("benvolio@montague.lit/square")


def info(*features: str, extra: str = "") -> st.Element:
    body = "".join(f"<feature var='{f}'/>" for f in features)
    return parse_fragment(f"<query xmlns='{INFO}'><identity category='client' type='pc'/>"
                          f"{body}{extra}</query>")


TUNE = info("http://jabber.org/protocol/tune", "http://jabber.org/protocol/tune+notify",
            "urn:xmpp:avatar:metadata+notify")
TUNE_VER = verification_string(TUNE)


class Peer:
    """Answers (or fails) the resolver's disco#info requests and records them."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str]] = []
        self.held: dict[str, Deferred[st.Element]] = {}

    def request(self, iq: st.Element, timeout: float) -> Deferred[st.Element]:
        query = st.child(iq, "query", INFO)
        assert query is not None and iq["type"] == "get"
        assert iq["from"] == OWNER.bare_str  # asked by the account's PEP service
        self.asked.append((iq["to"], query["node"]))
        answer = self.answers.get(iq["to"])
        if answer == "hold":
            d: Deferred[st.Element] = Deferred()
            self.held[iq["to"]] = d
            return d
        if isinstance(answer, Exception):
            return fail(answer)
        reply = st.make("iq", attrs={"type": "result", "from": iq["to"]})
        st.append(reply, st.copy(answer))
        return succeed(reply)


def done(d: Any) -> Any:
    out: list[Any] = []
    Deferred.fromCoroutine(d).addBoth(out.append)
    assert out
    return out[0]


def test_notify_nodes() -> None:
    assert notify_nodes(frozenset({"a+notify", "b", "+notify", "urn:x:y+notify"})) == {
        "a", "urn:x:y"}


def test_caps_parse() -> None:
    p = parse_fragment("<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
                       "node='http://code.google.com/p/exodus' ver='QgayPKawpkPSDYmwT/WM94u"
                       "Alu0='/></presence>")
    assert Caps.parse(p) == Caps("http://code.google.com/p/exodus",
                                 "QgayPKawpkPSDYmwT/WM94uAlu0=", "sha-1")
    assert Caps.parse(parse_fragment("<presence/>")) is None
    legacy = parse_fragment("<presence><c xmlns='http://jabber.org/protocol/caps' "
                            "node='http://exodus' ver='0.9'/></presence>")
    assert Caps.parse(legacy) == Caps("http://exodus", "0.9", None)
    assert Caps.parse(parse_fragment(  # node or ver missing: not caps
        "<presence><c xmlns='http://jabber.org/protocol/caps' ver='x'/></presence>")) is None


def test_well_formed() -> None:
    assert well_formed(TUNE)
    assert not well_formed(info("a", "a"))  # §5.4 step 3.4
    dup_identity = parse_fragment(f"<query xmlns='{INFO}'><identity category='client' "
                                  "type='pc'/><identity category='client' type='pc'/></query>")
    assert not well_formed(dup_identity)  # step 3.3
    form = ("<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>"
            "<value>urn:x</value></field></x>")
    assert well_formed(info("a", extra=form))
    assert not well_formed(info("a", extra=form + form))  # step 3.5: FORM_TYPE twice
    two_values = form.replace("<value>urn:x</value>", "<value>urn:x</value><value>urn:y"
                                                      "</value>")
    assert not well_formed(info("a", extra=two_values))


def test_verified_answers_are_cached_by_ver() -> None:
    peer = Peer({str(ROMEO): TUNE, str(BENVOLIO): TUNE})
    r = CapsResolver(peer.request, 30.0, 100)
    caps = Caps("http://psi-im.org", TUNE_VER, "sha-1")
    assert done(r.resolve(OWNER, ROMEO, caps)) == {"http://jabber.org/protocol/tune",
                                                   "urn:xmpp:avatar:metadata"}
    assert peer.asked == [(str(ROMEO), f"http://psi-im.org#{TUNE_VER}")]  # node#ver (§6.2)
    # another JID with the same ver: no question asked (§5.4 step 3.7)
    assert r.known(BENVOLIO, caps) is not None
    assert done(r.resolve(OWNER, BENVOLIO, caps)) == {"http://jabber.org/protocol/tune",
                                                      "urn:xmpp:avatar:metadata"}
    assert len(peer.asked) == 1


def test_mismatch_is_used_for_that_jid_only() -> None:
    forged = Caps("http://evil", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "sha-1")
    peer = Peer({str(ROMEO): TUNE, str(BENVOLIO): info("x+notify")})
    r = CapsResolver(peer.request, 30.0, 100)
    assert done(r.resolve(OWNER, ROMEO, forged)) == {"http://jabber.org/protocol/tune",
                                                     "urn:xmpp:avatar:metadata"}
    assert r.known(BENVOLIO, forged) is None  # §5.4 step 3.8: not cached by ver
    assert done(r.resolve(OWNER, BENVOLIO, forged)) == {"x"}
    assert len(peer.asked) == 2


def test_ill_formed_answer_is_not_cached_by_ver() -> None:
    bad = info("a+notify", "a+notify")
    ver = verification_string(bad)
    peer = Peer({str(ROMEO): bad})
    r = CapsResolver(peer.request, 30.0, 100)
    caps = Caps("n", ver, "sha-1")
    assert done(r.resolve(OWNER, ROMEO, caps)) == {"a"}
    assert caps.ver not in r.by_ver


def test_other_hash_and_legacy_are_per_jid() -> None:
    peer = Peer({str(ROMEO): TUNE, str(BENVOLIO): TUNE})
    r = CapsResolver(peer.request, 30.0, 100)
    for caps in (Caps("n", "whatever", "sha-256"), Caps("n", "0.9", None)):
        assert done(r.resolve(OWNER, ROMEO, caps)) is not None
        assert done(r.resolve(OWNER, ROMEO, caps)) is not None  # per-JID cache
        assert done(r.resolve(OWNER, BENVOLIO, caps)) is not None  # asked again
    assert len(peer.asked) == 4


def test_failures_leave_nothing_cached() -> None:
    peer = Peer({str(ROMEO): StanzaError("service-unavailable"),
                 str(BENVOLIO): IqTimeout("x")})
    r = CapsResolver(peer.request, 30.0, 100)
    caps = Caps("n", TUNE_VER, "sha-1")
    assert done(r.resolve(OWNER, ROMEO, caps)) is None
    assert done(r.resolve(OWNER, BENVOLIO, caps)) is None
    assert r.by_ver == {} and r.by_jid == {}


def test_concurrent_sightings_share_one_query() -> None:
    peer = Peer({str(ROMEO): "hold", str(BENVOLIO): TUNE})
    r = CapsResolver(peer.request, 30.0, 100)
    caps = Caps("n", TUNE_VER, "sha-1")
    results: list[Any] = []
    Deferred.fromCoroutine(r.resolve(OWNER, ROMEO, caps)).addBoth(results.append)
    Deferred.fromCoroutine(r.resolve(OWNER, BENVOLIO, caps)).addBoth(results.append)
    assert results == [] and len(peer.asked) == 1  # BENVOLIO waits for ROMEO's answer
    reply = st.make("iq", attrs={"type": "result", "from": str(ROMEO)})
    st.append(reply, st.copy(TUNE))
    peer.held[str(ROMEO)].callback(reply)
    assert len(results) == 2 and results[0] == results[1] and len(peer.asked) == 1


def test_cache_is_bounded() -> None:
    peer = Peer({})
    r = CapsResolver(peer.request, 30.0, 2)
    for n in range(5):
        q = info(f"f{n}+notify")
        peer.answers[str(ROMEO)] = q
        done(r.resolve(OWNER, ROMEO, Caps("n", verification_string(q), "sha-1")))
    assert len(r.by_ver) == 2
