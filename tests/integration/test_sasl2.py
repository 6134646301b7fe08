"""SASL2 (XEP-0388) with Bind 2 (XEP-0386) and FAST (XEP-0484), through a real socket.

The client is raw XML over pyOpenSSL (tests/support/tlsclient.py), with the test SCRAM
client (checked against scramp) and the HT computation written out here from
draft-schmaus-kitten-sasl-ht: initial response ``authcid NUL HMAC(token, "Initiator" ||
cb-data)``, server success data ``HMAC(token, "Responder" || cb-data)``.
"""

from __future__ import annotations

import base64
import hmac
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.scram import ScramClient
from tests.support.server import ServerProcess
from tests.support.tlsclient import Client

pytestmark = pytest.mark.integration
SASL2 = "urn:xmpp:sasl:2"
BIND2 = "urn:xmpp:bind:0"
FAST = "urn:xmpp:fast:0"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
MAM = "urn:xmpp:mam:2"
STREAMS = "http://etherx.jabber.org/streams"


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # The module's tests fail about ten logins on purpose, all from 127.0.0.1: the
    # brute-force guard (tested in test_authguard) must not ban whichever test comes next.
    yield from start_server(tmp_path_factory.mktemp("sasl2"), "sqlite", ca, config={
        "auth": {"ban_after": 1000, "account_ban_after": 1000, "throttle_after": 1000}})


def q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def authenticate(c: Client, mech: str, initial: bytes, extra: str = "",
                 ua: str | None = None) -> ET.Element:
    agent = f"<user-agent id='{ua}'><software>xmppd tests</software></user-agent>" if ua else ""
    c.send(f"<authenticate xmlns='{SASL2}' mechanism='{mech}'>"
           f"<initial-response>{b64(initial)}</initial-response>{agent}{extra}</authenticate>")
    return c.next()


def scram2(c: Client, user: str, pw: str, extra: str = "", ua: str | None = None,
           mech: str = "SCRAM-SHA-256") -> ET.Element:
    """A SASL2 SCRAM exchange; returns the <success/> or <failure/>."""
    client = ScramClient(mech, user, pw)
    el = authenticate(c, mech, client.first(), extra, ua)
    if el.tag != q(SASL2, "challenge"):
        return el
    final = client.final(base64.b64decode(el.text or ""))
    c.send(f"<response xmlns='{SASL2}'>{b64(final)}</response>")
    el = c.next()
    if el.tag == q(SASL2, "success"):
        data = el.findtext(q(SASL2, "additional-data"))
        assert data and client.verify(base64.b64decode(data))  # the server proved itself
    return el


def ht(c: Client, mech: str, user: str, token: str, fast_attrs: str = "",
       ua: str = "", extra: str = "") -> ET.Element:
    cb = {"HT-SHA-256-NONE": b"", "HT-SHA-256-EXPR": c.exporter(),
          "HT-SHA-256-ENDP": c.end_point()}[mech]
    proof = hmac.digest(token.encode(), b"Initiator" + cb, "sha256")
    el = authenticate(c, mech, user.encode() + b"\0" + proof,
                      f"<fast xmlns='{FAST}' {fast_attrs}/>{extra}", ua)
    if el.tag == q(SASL2, "success"):
        data = el.findtext(q(SASL2, "additional-data"))
        assert data and base64.b64decode(data) == hmac.digest(token.encode(),
                                                               b"Responder" + cb, "sha256")
    return el


def failure(el: ET.Element) -> str:
    assert el.tag == q(SASL2, "failure"), ET.tostring(el)
    return next(c.tag.split("}")[1] for c in el if c.tag.startswith("{" + SASL))


def token_of(success: ET.Element) -> str:
    t = success.find(q(FAST, "token"))
    assert t is not None and t.get("expiry"), ET.tostring(success)
    return t.get("token", "")


def login_for_token(srv: ServerProcess, user: str, pw: str, ua: str,
                    mech: str = "HT-SHA-256-NONE") -> str:
    c = Client(srv)
    success = scram2(c, user, pw, f"<request-token xmlns='{FAST}' mechanism='{mech}'/>", ua)
    c.close()
    return token_of(success)


def test_features_offer_sasl2_bind2_and_fast(srv: ServerProcess) -> None:
    c = Client(srv)
    auth = c.features.find(q(SASL2, "authentication"))
    assert auth is not None
    mechs = [m.text for m in auth.findall(q(SASL2, "mechanism"))]
    assert "SCRAM-SHA-256-PLUS" in mechs and "SCRAM-SHA-256" in mechs
    assert c.features.find(q(SASL, "mechanisms")) is not None  # RFC 6120 SASL still offered
    inline = auth.find(q(SASL2, "inline"))
    assert inline is not None
    bind_features = {f.get("var") for f in inline.iterfind(f"{q(BIND2, 'bind')}/"
                                                           f"{q(BIND2, 'inline')}/"
                                                           f"{q(BIND2, 'feature')}")}
    assert {"urn:xmpp:carbons:2", "urn:xmpp:csi:0"} <= bind_features
    fast = [m.text for m in inline.iterfind(f"{q(FAST, 'fast')}/{q(FAST, 'mechanism')}")]
    assert fast == ["HT-SHA-256-EXPR", "HT-SHA-256-ENDP", "HT-SHA-256-NONE"]
    c.close()


def test_one_round_trip_authenticates_binds_and_enables(srv: ServerProcess) -> None:
    jid, pw = srv.new_user("s2")
    user = jid.split("@")[0]
    c = Client(srv)
    success = scram2(c, user, pw, f"<bind xmlns='{BIND2}'><tag>Tests</tag>"
                                  "<enable xmlns='urn:xmpp:carbons:2'/></bind>",
                     ua=str(uuid.uuid4()))
    assert success.tag == q(SASL2, "success"), ET.tostring(success)
    full = success.findtext(q(SASL2, "authorization-identifier")) or ""
    assert full.startswith(f"{jid}/Tests/")  # XEP-0386 §3.2.1: tag, then a server part
    bound = success.find(q(BIND2, "bound"))
    assert bound is not None and bound.find(q(MAM, "metadata")) is not None
    features = c.next()  # no stream restart: the new features follow <success/> at once
    assert features.tag == q(STREAMS, "features")
    assert features.find("{urn:ietf:params:xml:ns:xmpp-bind}bind") is None  # already bound
    c.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    pong = c.next()
    assert pong.get("id") == "p1" and pong.get("type") == "result"
    c.close()


def test_wrong_password_is_a_sasl2_failure_and_the_stream_stays(srv: ServerProcess) -> None:
    jid, pw = srv.new_user("s2f")
    c = Client(srv)
    assert failure(scram2(c, jid.split("@")[0], "wrong")) == "not-authorized"
    assert scram2(c, jid.split("@")[0], pw).tag == q(SASL2, "success")
    c.close()


@pytest.mark.parametrize("mech", ["HT-SHA-256-NONE", "HT-SHA-256-EXPR", "HT-SHA-256-ENDP"])
def test_fast_token_login_in_one_round_trip(srv: ServerProcess, mech: str) -> None:
    jid, pw = srv.new_user("fast")
    user, ua = jid.split("@")[0], str(uuid.uuid4())
    token = login_for_token(srv, user, pw, ua, mech)
    c = Client(srv)
    success = ht(c, mech, user, token, ua=ua, extra=f"<bind xmlns='{BIND2}'/>")
    assert success.tag == q(SASL2, "success"), ET.tostring(success)
    assert success.find(q(BIND2, "bound")) is not None
    assert success.find(q(FAST, "token")) is None  # fresh: no rotation yet
    c.close()


def test_bad_tokens_are_refused(srv: ServerProcess) -> None:
    jid, pw = srv.new_user("badtok")
    user, ua = jid.split("@")[0], str(uuid.uuid4())
    token = login_for_token(srv, user, pw, ua)
    for mech, tok, client in [("HT-SHA-256-NONE", token + "x", ua),  # wrong token
                              ("HT-SHA-256-NONE", token, str(uuid.uuid4())),  # another client
                              ("HT-SHA-256-EXPR", token, ua)]:  # another mechanism
        c = Client(srv)
        assert failure(ht(c, mech, user, tok, ua=client)) == "not-authorized"
        c.close()
    c = Client(srv)  # FAST without a user-agent id
    assert failure(ht(c, "HT-SHA-256-NONE", user, token)) == "malformed-request"
    assert ht(c, "HT-SHA-256-NONE", user, token, ua=ua).tag == q(SASL2, "success")
    c.close()


def test_a_replayed_count_is_refused(srv: ServerProcess) -> None:
    jid, pw = srv.new_user("replay")
    user, ua = jid.split("@")[0], str(uuid.uuid4())
    token = login_for_token(srv, user, pw, ua)
    for count, outcome in [(5, "success"), (5, "not-authorized"), (4, "not-authorized"),
                           (6, "success")]:
        c = Client(srv)
        el = ht(c, "HT-SHA-256-NONE", user, token, f"count='{count}'", ua)
        assert (el.tag.split("}")[1] if el.tag == q(SASL2, "success") else failure(el)) == outcome
        c.close()


def test_invalidate_logs_the_token_out(srv: ServerProcess) -> None:
    jid, pw = srv.new_user("logout")
    user, ua = jid.split("@")[0], str(uuid.uuid4())
    token = login_for_token(srv, user, pw, ua)
    c = Client(srv)
    assert ht(c, "HT-SHA-256-NONE", user, token, "invalidate='true'", ua).tag == q(
        SASL2, "success")
    c.close()
    c = Client(srv)
    assert failure(ht(c, "HT-SHA-256-NONE", user, token, ua=ua)) == "not-authorized"
    c.close()


def test_a_password_change_revokes_every_token(srv: ServerProcess) -> None:
    jid, pw = srv.new_user("pwchange")
    user, ua = jid.split("@")[0], str(uuid.uuid4())
    token = login_for_token(srv, user, pw, ua)
    subprocess.run([sys.executable, "-m", "xmppd", "passwd", jid, "--password-stdin", "-c",
                    str(srv.config_path)], input="new secret\n", text=True, check=True,
                   capture_output=True)
    c = Client(srv)
    assert failure(ht(c, "HT-SHA-256-NONE", user, token, ua=ua)) == "not-authorized"
    c.close()


def test_a_new_bind_of_the_same_client_ends_the_old_session(srv: ServerProcess) -> None:
    """XEP-0386 §3.2: a client that binds again (same user-agent id) replaces itself."""
    jid, pw = srv.new_user("again")
    user, ua = jid.split("@")[0], str(uuid.uuid4())
    first = Client(srv)
    assert scram2(first, user, pw, f"<bind xmlns='{BIND2}'/>", ua).tag == q(SASL2, "success")
    first.next()  # features
    second = Client(srv)
    assert scram2(second, user, pw, f"<bind xmlns='{BIND2}'/>", ua).tag == q(SASL2, "success")
    err = first.next()
    assert err.tag == q(STREAMS, "error") and err.find(
        "{urn:ietf:params:xml:ns:xmpp-streams}conflict") is not None
    first.close()
    second.close()


def test_sasl2_requires_tls(srv: ServerProcess) -> None:
    """Before STARTTLS (required by default) an <authenticate/> gets encryption-required."""
    c = Client(srv, starttls=False)
    c.send(f"<authenticate xmlns='{SASL2}' mechanism='SCRAM-SHA-256'/>")
    assert failure(c.next()) == "encryption-required"
    c.close()


SM = "urn:xmpp:sm:3"


def test_bind2_enables_stream_management_inline(srv: ServerProcess) -> None:
    jid, pw = srv.new_user("sm2")
    c = Client(srv)
    success = scram2(c, jid.split("@")[0], pw,
                     f"<bind xmlns='{BIND2}'><enable xmlns='{SM}' resume='true'/></bind>")
    enabled = success.find(f"{q(BIND2, 'bound')}/{q(SM, 'enabled')}")
    assert enabled is not None and enabled.get("id") and enabled.get("resume") == "true"
    c.next()  # features
    c.send(f"<r xmlns='{SM}'/>")
    assert c.next().tag == q(SM, "a")  # counting from the bind
    c.close()


def test_sasl2_resumes_a_hibernated_session_inline(srv: ServerProcess) -> None:
    """XEP-0386 §3.2: a <resume/> in <authenticate/> is processed first; resumed, the
    session is not bound again, <resumed/> is in <success/>, and the stanzas the client
    never acknowledged follow it."""
    jid, pw = srv.new_user("res2")
    user = jid.split("@")[0]
    first = Client(srv)
    success = scram2(first, user, pw, f"<bind xmlns='{BIND2}'><tag>t</tag>"
                                      f"<enable xmlns='{SM}' resume='true'/></bind>")
    full = success.findtext(q(SASL2, "authorization-identifier"))
    previd = success.find(f"{q(BIND2, 'bound')}/{q(SM, 'enabled')}").get("id")  # type: ignore[union-attr]
    first.next()
    first.sock.shutdown(2)  # the network goes away: no closing tag
    first.close()
    other, opw = srv.new_user("res2o")
    sender = Client(srv)
    scram2(sender, other.split("@")[0], opw, f"<bind xmlns='{BIND2}'/>")
    sender.next()
    sender.send(f"<message to='{full}' type='chat' id='m1'><body>while away</body></message>")
    sender.send("<iq type='get' id='b'><ping xmlns='urn:xmpp:ping'/></iq>")
    while sender.next().get("id") != "b":
        pass  # routed to the hibernating session
    again = Client(srv)
    success = scram2(again, user, pw, f"<resume xmlns='{SM}' previd='{previd}' h='0'/>"
                                      f"<bind xmlns='{BIND2}'/>")
    assert success.find(q(SM, "resumed")) is not None, ET.tostring(success)
    assert success.find(q(BIND2, "bound")) is None  # not bound again
    assert success.findtext(q(SASL2, "authorization-identifier")) == full
    assert again.next().tag == q(STREAMS, "features")  # XEP-0388 §2.6.1: right after
    msg = again.next()
    assert msg.findtext("{jabber:client}body") == "while away"
    again.close()
    sender.close()


def test_bind2_clears_offline_messages_the_archive_holds(srv: ServerProcess) -> None:
    """XEP-0386 §3.2: a Bind 2 client gets the archive's metadata instead of the offline
    queue; what the archive holds is cleared without being sent."""
    rcpt, rpw = srv.new_user("offb2")
    sender, spw = srv.new_user("offb2s")
    s = Client(srv)
    scram2(s, sender.split("@")[0], spw, f"<bind xmlns='{BIND2}'/>")
    s.next()
    s.send(f"<message to='{rcpt}' type='chat' id='o1'><body>stored</body></message>")
    s.send("<iq type='get' id='b'><ping xmlns='urn:xmpp:ping'/></iq>")
    while s.next().get("id") != "b":
        pass
    c = Client(srv)
    success = scram2(c, rcpt.split("@")[0], rpw, f"<bind xmlns='{BIND2}'/>")
    end = success.find(f"{q(BIND2, 'bound')}/{q(MAM, 'metadata')}/{q(MAM, 'end')}")
    assert end is not None and end.get("id")  # the archive has it
    c.next()
    c.send("<presence/>")
    c.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    while True:
        el = c.next()
        assert el.tag != "{jabber:client}message", ET.tostring(el)
        if el.get("id") == "p":
            break
    c.close()
    s.close()


@pytest.mark.parametrize("command", ["kick", "disable"])
def test_an_admin_kick_or_disable_revokes_the_tokens(srv: ServerProcess, command: str) -> None:
    """XEP-0484 tokens are not a way back in for a client an administrator threw out."""
    jid, pw = srv.new_user("kicked")
    user, ua = jid.split("@")[0], str(uuid.uuid4())
    token = login_for_token(srv, user, pw, ua)
    subprocess.run([sys.executable, "-m", "xmppd", command, jid, "-c", str(srv.config_path)],
                   check=True, capture_output=True, text=True)
    if command == "disable":
        subprocess.run([sys.executable, "-m", "xmppd", "enable", jid, "-c",
                        str(srv.config_path)], check=True, capture_output=True, text=True)
    c = Client(srv)
    assert failure(ht(c, "HT-SHA-256-NONE", user, token, ua=ua)) == "not-authorized"
    assert scram2(c, user, pw).tag == q(SASL2, "success")  # the password still works
    c.close()
