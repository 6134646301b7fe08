"""The test SCRAM client (tests/support/scram.py) computes what scramp's client computes,
with and without a channel binding scramp supports."""

from __future__ import annotations

import pytest
from scramp import ScramClient as Reference

from tests.support.scram import ScramClient

SERVER_FIRST = "r={nonce}server-part,s=QSXCR+Q6sek8bf92,i=4096"


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"])
def test_same_messages_as_scramp(mech: str) -> None:
    cb = ("tls-server-end-point", b"\x01\x02certificate hash") if mech.endswith("PLUS") else None
    ours = ScramClient(mech, "user", "pencil", cb=cb, nonce="fixednonce")
    ref = Reference([mech], "user", "pencil", channel_binding=cb, c_nonce="fixednonce")
    assert ours.first().decode() == ref.get_client_first()
    server_first = SERVER_FIRST.format(nonce="fixednonce")
    ref.set_server_first(server_first)
    assert ours.final(server_first.encode()).decode() == ref.get_client_final()
