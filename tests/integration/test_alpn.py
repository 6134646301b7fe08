"""ALPN on the direct-TLS listeners (XEP-0368 §3 rules 7-9, RFC 7301 §3.2), through real
TLS handshakes with Python's ssl: each listener selects its own protocol, refuses an ALPN
list without it with the fatal no_application_protocol alert, and serves clients that send
no ALPN at all. Federation over direct TLS (the initiating side offering xmpp-server) is
checked in test_federation.py."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='{ns}' xmlns:stream='http://etherx.jabber"
          ".org/streams' to='localhost' version='1.0'>")


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp("alpn"), "sqlite", ca, config={
        "listeners": [
            {"type": "c2s", "port": 0, "address": "127.0.0.1"},
            {"type": "c2s_tls", "port": 0, "address": "127.0.0.1"},
            {"type": "s2s_tls", "port": 0, "address": "127.0.0.1"},
            {"type": "https", "port": 0, "address": "127.0.0.1"},
        ]})


def handshake(srv: ServerProcess, kind: str, alpn: list[str] | None) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(srv.ca.ca_file))
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", srv.ports[kind][0]), timeout=10)
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def refused(srv: ServerProcess, kind: str, alpn: list[str]) -> None:
    with pytest.raises(ssl.SSLError) as exc:
        handshake(srv, kind, alpn).close()
    assert "alert no application protocol" in str(exc.value).lower(), exc.value


def stream_features(tls: ssl.SSLSocket, ns: str) -> bytes:
    """Open a stream and read until the features arrive (the listener really speaks XMPP)."""
    tls.sendall(HEADER.format(ns=ns).encode())
    data = b""
    while b"</stream:features>" not in data:
        chunk = tls.recv(65536)
        assert chunk, data
        data += chunk
    return data


@pytest.mark.parametrize("offered", [["xmpp-client"], ["h2", "xmpp-client", "xmpp-server"]])
def test_c2s_direct_tls_selects_xmpp_client(srv: ServerProcess, offered: list[str]) -> None:
    with handshake(srv, "c2s_tls", offered) as tls:
        assert tls.selected_alpn_protocol() == "xmpp-client"  # rule 8
        assert b"mechanisms" in stream_features(tls, "jabber:client")


@pytest.mark.parametrize("offered", [["xmpp-server"], ["xmpp-client", "h2", "xmpp-server"]])
def test_s2s_direct_tls_selects_xmpp_server(srv: ServerProcess, offered: list[str]) -> None:
    with handshake(srv, "s2s_tls", offered) as tls:
        assert tls.selected_alpn_protocol() == "xmpp-server"  # rule 9
        assert b"features" in stream_features(tls, "jabber:server")


def test_https_selects_http(srv: ServerProcess) -> None:
    with handshake(srv, "https", ["h2", "http/1.1"]) as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
        tls.sendall(b"GET /.well-known/host-meta HTTP/1.1\r\nHost: localhost\r\n"
                    b"Connection: close\r\n\r\n")
        assert tls.recv(65536).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("kind,offered", [
    ("c2s_tls", ["xmpp-server"]),  # a server dialled the client port
    ("c2s_tls", ["h2", "http/1.1"]),
    ("s2s_tls", ["xmpp-client"]),  # a client dialled the server port
    ("s2s_tls", ["http/1.1"]),
    ("https", ["xmpp-client"]),
])
def test_a_list_without_the_listeners_protocol_is_refused(
        srv: ServerProcess, kind: str, offered: list[str]) -> None:
    """RFC 7301 §3.2: the fatal no_application_protocol alert; nothing else happens and the
    listener goes on serving (the fixture checks that the server logged no traceback)."""
    refused(srv, kind, offered)
    with handshake(srv, kind, None) as tls:
        assert tls.selected_alpn_protocol() is None


@pytest.mark.parametrize("kind,ns", [("c2s_tls", "jabber:client"), ("s2s_tls", "jabber:server")])
def test_no_alpn_is_served(srv: ServerProcess, kind: str, ns: str) -> None:
    """Rule 7 makes ALPN a SHOULD: a peer without it still gets the stream."""
    with handshake(srv, kind, None) as tls:
        assert tls.selected_alpn_protocol() is None
        assert b"features" in stream_features(tls, ns)
