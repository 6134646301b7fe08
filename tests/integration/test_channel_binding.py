"""SCRAM-*-PLUS with tls-exporter and tls-server-end-point (RFC 5802 §6, RFC 9266, RFC
5929), advertised with XEP-0440, downgrade-protected with XEP-0474; through a real socket.

The client side is pyOpenSSL (Python's ssl module cannot export keying material) speaking
raw XMPP, with the SCRAM client of tests/support/scram.py.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import pytest
from OpenSSL import SSL

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.scram import ScramClient
from tests.support.server import ServerProcess
from tests.support.tlsclient import Client

pytestmark = pytest.mark.integration
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
TLS = "urn:ietf:params:xml:ns:xmpp-tls"
CB = "urn:xmpp:sasl-cb:0"
HEADER = ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/"
          "streams' to='localhost' version='1.0'>")


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp("cb"), "sqlite", ca)


def ssdp(mechanisms: list[str], cb_types: list[str] | None, hash_name: str) -> str:
    """XEP-0474 §5.1, computed from what the client saw."""
    text = "\x1e".join(sorted(mechanisms))
    if cb_types is not None:
        text += "\x1f" + "\x1e".join(sorted(cb_types))
    return base64.b64encode(hashlib.new(hash_name, text.encode()).digest()).decode()


def test_tls13_offers_plus_mechanisms_and_both_binding_types(srv: ServerProcess) -> None:
    c = Client(srv)
    assert {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1",
            "PLAIN"} == set(c.mechanisms())
    assert c.cb_types() == ["tls-exporter", "tls-server-end-point"]
    c.close()


def test_tls12_offers_tls_server_end_point_only(srv: ServerProcess) -> None:
    """RFC 9266 §4.2: no tls-exporter on TLS 1.2 without the extended master secret."""
    c = Client(srv, max_tls=SSL.TLS1_2_VERSION)
    assert c.cb_types() == ["tls-server-end-point"]
    user, pw = srv.new_user("cb12")
    result, _ = c.scram("SCRAM-SHA-256-PLUS", ScramClient(
        "SCRAM-SHA-256-PLUS", user.split("@")[0], pw, cb=("tls-server-end-point",
                                                          c.end_point())))
    assert result == "success"
    c.close()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"])
@pytest.mark.parametrize("cb_type", ["tls-exporter", "tls-server-end-point"])
def test_plus_login_with_each_binding(srv: ServerProcess, mech: str, cb_type: str) -> None:
    user, pw = srv.new_user("cb")
    c = Client(srv)
    data = c.exporter() if cb_type == "tls-exporter" else c.end_point()
    result, client = c.scram(mech, ScramClient(mech, user.split("@")[0], pw, cb=(cb_type, data)))
    assert result == "success"
    # XEP-0474: the server-first-message signs what the features advertised
    assert client.attribute("h") == ssdp(c.mechanisms(), c.cb_types(),
                                         "sha256" if "256" in mech else "sha1")
    c.close()


@pytest.mark.parametrize("case", ["other-connection", "wrong-type-data"])
def test_a_binding_that_does_not_match_is_refused(srv: ServerProcess, case: str) -> None:
    """The data of another TLS connection (a MITM's) or of the other type: not-authorized,
    and the right password does not help."""
    user, pw = srv.new_user("cbx")
    other = Client(srv)
    c = Client(srv)
    tamper = other.exporter() if case == "other-connection" else c.end_point()
    result, _ = c.scram("SCRAM-SHA-256-PLUS", ScramClient(
        "SCRAM-SHA-256-PLUS", user.split("@")[0], pw, cb=("tls-exporter", c.exporter())),
        tamper=tamper)
    assert result == "not-authorized"
    other.close()
    c.close()


def test_y_flag_while_plus_is_offered_is_refused(srv: ServerProcess) -> None:
    """RFC 5802 §6: 'y' says the client binds but saw no -PLUS mechanism; this stream
    offered them, so the list was tampered with."""
    user, pw = srv.new_user("cby")
    c = Client(srv)
    result, _ = c.scram("SCRAM-SHA-256", ScramClient("SCRAM-SHA-256", user.split("@")[0], pw,
                                                     flag="y"))
    assert result == "not-authorized"
    result, _ = c.scram("SCRAM-SHA-256", ScramClient("SCRAM-SHA-256", user.split("@")[0], pw))
    assert result == "success"  # 'n' (the client does not bind) is fine
    c.close()


@pytest.mark.parametrize("mech,flag,cb_type", [
    ("SCRAM-SHA-256-PLUS", "n", None),  # -PLUS without binding
    ("SCRAM-SHA-256", "p=tls-exporter", "tls-exporter"),  # binding without -PLUS
    ("SCRAM-SHA-256-PLUS", "p=tls-unique", "tls-unique"),  # a type not offered
])
def test_inconsistent_binding_requests(srv: ServerProcess, mech: str, flag: str,
                                       cb_type: str | None) -> None:
    user, pw = srv.new_user("cbi")
    c = Client(srv)
    cb = (cb_type, b"x" * 32) if cb_type else None
    result, _ = c.scram(mech, ScramClient(mech, user.split("@")[0], pw, cb=cb, flag=flag))
    assert result == "malformed-request"
    c.close()
