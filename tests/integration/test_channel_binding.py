"""SCRAM-*-PLUS with tls-exporter and tls-server-end-point (RFC 5802 §6, RFC 9266, RFC
5929), advertised with XEP-0440, downgrade-protected with XEP-0474; through a real socket.

The client side is pyOpenSSL (Python's ssl module cannot export keying material) speaking
raw XMPP, with the SCRAM client of tests/support/scram.py.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.scram import ScramClient
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
TLS = "urn:ietf:params:xml:ns:xmpp-tls"
CB = "urn:xmpp:sasl-cb:0"
HEADER = ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/"
          "streams' to='localhost' version='1.0'>")


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp("cb"), "sqlite", ca)


class Client:
    """A blocking XMPP client on pyOpenSSL, enough for stream features and SASL."""

    def __init__(self, srv: ServerProcess, max_tls: int = SSL.TLS1_3_VERSION) -> None:
        self.sock = socket.create_connection(("127.0.0.1", srv.c2s_port), timeout=20)
        self.sock.settimeout(None)  # pyOpenSSL needs a blocking socket (pytest-timeout guards)
        self.conn: SSL.Connection | None = None
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.elements: list[ET.Element] = []
        self.features = self.open()
        assert self.features.find(f"{{{TLS}}}starttls") is not None
        self.send(f"<starttls xmlns='{TLS}'/>")
        assert self.next().tag == f"{{{TLS}}}proceed"
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_max_proto_version(max_tls)
        ctx.load_verify_locations(str(srv.ca.ca_file))
        self.conn = SSL.Connection(ctx, self.sock)
        self.conn.set_connect_state()
        self.conn.set_tlsext_host_name(b"localhost")
        self.conn.do_handshake()
        self.features = self.open()

    def send(self, data: str) -> None:
        (self.conn or self.sock).sendall(data.encode())

    def open(self) -> ET.Element:
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.send(HEADER)
        return self.next()

    def next(self) -> ET.Element:
        while not self.elements:
            data = (self.conn or self.sock).recv(65536)
            assert data, "server closed the connection"
            self.parser.feed(data)
            for event, el in self.parser.read_events():
                self.depth += 1 if event == "start" else -1
                if event == "end" and self.depth == 1:
                    self.elements.append(el)
        return self.elements.pop(0)

    def mechanisms(self) -> list[str]:
        return [m.text or "" for m in self.features.iter(f"{{{SASL}}}mechanism")]

    def cb_types(self) -> list[str] | None:
        cb = self.features.find(f"{{{CB}}}sasl-channel-binding")
        return None if cb is None else [c.get("type", "") for c in cb]

    def exporter(self) -> bytes:
        assert self.conn is not None
        data: bytes = self.conn.export_keying_material(b"EXPORTER-Channel-Binding", 32)
        return data

    def end_point(self) -> bytes:
        assert self.conn is not None
        cert = self.conn.get_peer_certificate()
        assert cert is not None
        c: x509.Certificate = cert.to_cryptography()
        return hashlib.sha256(c.public_bytes(Encoding.DER)).digest()

    def scram(self, mech: str, client: ScramClient, tamper: bytes | None = None
              ) -> tuple[str, ScramClient]:
        """Run the exchange; returns ('success' or the failure condition, client)."""
        self.send(f"<auth xmlns='{SASL}' mechanism='{mech}'>"
                  f"{base64.b64encode(client.first()).decode()}</auth>")
        el = self.next()
        if el.tag != f"{{{SASL}}}challenge":
            return condition(el), client
        final = client.final(base64.b64decode(el.text or ""), tamper)
        self.send(f"<response xmlns='{SASL}'>{base64.b64encode(final).decode()}</response>")
        el = self.next()
        if el.tag == f"{{{SASL}}}success":
            assert client.verify(base64.b64decode(el.text or ""))
            return "success", client
        return condition(el), client

    def close(self) -> None:
        self.sock.close()


def condition(el: ET.Element) -> str:
    assert el.tag == f"{{{SASL}}}failure", ET.tostring(el)
    return next(c.tag.split("}")[1] for c in el if not c.tag.endswith("}text"))


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
