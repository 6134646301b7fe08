"""A blocking XMPP client on pyOpenSSL (Python's ssl cannot export keying material, which
tls-exporter channel binding needs), speaking raw XML: enough for stream features, SASL and
SASL2 in tests."""

from __future__ import annotations

import base64
import hashlib
import socket
import xml.etree.ElementTree as ET

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL

from tests.support.scram import ScramClient
from tests.support.server import ServerProcess

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
TLS = "urn:ietf:params:xml:ns:xmpp-tls"
CB = "urn:xmpp:sasl-cb:0"
HEADER = ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/"
          "streams' to='localhost' version='1.0'>")


class Client:
    """A blocking XMPP client on pyOpenSSL, enough for stream features and SASL."""

    def __init__(self, srv: ServerProcess, max_tls: int = SSL.TLS1_3_VERSION,
                 starttls: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", srv.c2s_port), timeout=20)
        self.sock.settimeout(None)  # pyOpenSSL needs a blocking socket (pytest-timeout guards)
        self.conn: SSL.Connection | None = None
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.elements: list[ET.Element] = []
        self.features = self.open()
        assert self.features.find(f"{{{TLS}}}starttls") is not None
        if not starttls:
            return
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


