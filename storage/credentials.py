"""The SCRAM verifier a login checks (its own module: the account store, the facade, SASL
and the XEP-0227 importer all use it, and none of them should import another for it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Credentials:
    """SCRAM verifier for one hash (RFC 5802 §3): never the password itself."""

    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes
    # The account is disabled (XEP-0133): read with the credentials, so a login asks the
    # database once; a correct password then gets <account-disabled/> (RFC 6120 §6.5.1).
    disabled: bool = False
