"""Slow HTTP clients against a running server, over real sockets (found by hand: one address
held 500 connections open by sending a header byte every few seconds). Past
web.max_pending_per_ip connections still sending headers, an address's next connection is
closed at once, TLS or not; other addresses, and a WebSocket login, are not affected. (The
deadline itself is tested on a fake clock in tests/unit/test_http_guard.py.)"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
CAP = 4


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp("http-guard"), "sqlite", ca, config={
        "listeners": [{"type": "c2s", "port": 0, "address": "127.0.0.1"},
                      {"type": "https", "port": 0, "address": "127.0.0.1"},
                      {"type": "http", "port": 0, "address": "127.0.0.1"}],
        "web": {"max_pending_per_ip": CAP}})


def _slow(port: int, source: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
    return s


def _closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:  # still open after the socket's timeout
        return False


def _served(port: int, source: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        return s.recv(100)


def test_one_address_cannot_hold_more_than_its_share(srv: ServerProcess) -> None:
    port = srv.ports["http"][0]
    held = [_slow(port, "127.0.0.2") for _ in range(CAP)]
    try:
        assert _served(port, "127.0.0.1").startswith(b"HTTP/1.1 200")  # others: served
        try:  # reset at once: in connect() already, or at the first read (not a timeout)
            extra = _slow(port, "127.0.0.2")
        except ConnectionResetError:
            pass
        else:
            with extra:
                assert _closed(extra)
        # The TLS listener counts from the connection, before the handshake.
        ctx = ssl.create_default_context(cafile=str(srv.ca.ca_file))
        tls_held = [socket.create_connection(("127.0.0.1", srv.https_port), timeout=10,
                                             source_address=("127.0.0.3", 0))
                    for _ in range(CAP)]
        with pytest.raises(OSError):  # reset at connect or in the handshake (SSLError too)
            late = socket.create_connection(("127.0.0.1", srv.https_port), timeout=10,
                                            source_address=("127.0.0.3", 0))
            ctx.wrap_socket(late, server_hostname="localhost")
        for s in tls_held:
            s.close()
        # The held connections finish their headers (their answers are the barrier): their
        # slots come back.
        for s in held:
            s.sendall(b"1\r\nConnection: close\r\n\r\n")
            assert s.recv(12).startswith(b"HTTP/1.1")
        assert _served(port, "127.0.0.2").startswith(b"HTTP/1.1 200")
    finally:
        for s in held:
            s.close()
