"""A SCRAM client with every channel binding type, for tests (scramp's client has no
tls-exporter). tests/unit/test_scram_client.py checks it against scramp where both work."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}


class ScramClient:
    def __init__(self, mechanism: str, username: str, password: str,
                 cb: tuple[str, bytes] | None = None, flag: str | None = None,
                 nonce: str | None = None) -> None:
        self.hash = HASHES[mechanism.removesuffix("-PLUS")]
        self.username, self.password = username, password
        self.cb_data = cb[1] if cb else b""
        self.header = (flag or (f"p={cb[0]}" if cb else "n")) + ",,"
        self.nonce = nonce or base64.b64encode(os.urandom(12)).decode()
        self.bare = f"n={username},r={self.nonce}"
        self.server_first = ""
        self._server_key = b""
        self._auth_message = b""

    def first(self) -> bytes:
        return (self.header + self.bare).encode()

    def final(self, server_first: bytes, cb_data: bytes | None = None) -> bytes:
        """The client-final-message; ``cb_data`` overrides the binding data (to tamper)."""
        self.server_first = server_first.decode()
        attrs = dict(a.split("=", 1) for a in self.server_first.split(","))
        salt, iterations, nonce = base64.b64decode(attrs["s"]), int(attrs["i"]), attrs["r"]
        assert nonce.startswith(self.nonce)
        salted = hashlib.pbkdf2_hmac(self.hash, self.password.encode(), salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", self.hash)
        stored = hashlib.new(self.hash, client_key).digest()
        data = self.cb_data if cb_data is None else cb_data
        c = base64.b64encode(self.header.encode() + data).decode()
        without_proof = f"c={c},r={nonce}"
        self._auth_message = f"{self.bare},{self.server_first},{without_proof}".encode()
        signature = hmac.digest(stored, self._auth_message, self.hash)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_key = hmac.digest(salted, b"Server Key", self.hash)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> bool:
        expected = hmac.digest(self._server_key, self._auth_message, self.hash)
        return server_final == b"v=" + base64.b64encode(expected)

    def attribute(self, name: str) -> str | None:
        """An attribute of the server-first-message (XEP-0474's 'h')."""
        for part in self.server_first.split(","):
            if part.startswith(name + "="):
                return part[len(name) + 1:]
        return None
