"""SCRAM exchanges against scramp's client, and PLAIN parsing."""

from __future__ import annotations

import pytest
from scramp import ScramClient

from tests.support.inproc import add_user, make_server, resolve
from xmppd.errors import SASLFailure
from xmppd.sasl import Plain, Scram


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
def test_scram_success_and_server_signature(mech: str) -> None:
    server = make_server([])
    add_user(server, "alice@localhost", "correct horse")
    client = ScramClient([mech], "alice", "correct horse")
    m = Scram(server.accounts, "localhost", mech)
    step = resolve(m.start(client.get_client_first().encode()))
    client.set_server_first(step.challenge.decode())
    done = resolve(m.respond(client.get_client_final().encode()))
    assert done.success and done.username == "alice"
    client.set_server_final(done.data.decode())  # verifies the server's signature


@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("nobody", "x")])
def test_scram_failure_is_not_authorized(user: str, password: str) -> None:
    server = make_server([])
    add_user(server, "alice@localhost", "correct horse")
    client = ScramClient(["SCRAM-SHA-256"], user, password)
    m = Scram(server.accounts, "localhost", "SCRAM-SHA-256")
    step = resolve(m.start(client.get_client_first().encode()))
    client.set_server_first(step.challenge.decode())  # unknown users get a plausible challenge
    with pytest.raises(SASLFailure) as exc:
        resolve(m.respond(client.get_client_final().encode()))
    assert exc.value.condition == "not-authorized"


@pytest.mark.parametrize("first,condition", [
    (b"garbage", "malformed-request"),
    (b"n,a=mallory@localhost,n=alice,r=abc", "invalid-authzid"),
    (b"n,,n=al=ice,r=abc", "malformed-request"),
    (b"\xff\xfe", "malformed-request"),
])
def test_scram_bad_client_first(first: bytes, condition: str) -> None:
    server = make_server([])
    add_user(server, "alice@localhost")
    with pytest.raises(SASLFailure) as exc:
        resolve(Scram(server.accounts, "localhost", "SCRAM-SHA-256").start(first))
    assert exc.value.condition == condition


def test_scram_without_initial_response_sends_empty_challenge() -> None:
    server = make_server([])
    m = Scram(server.accounts, "localhost", "SCRAM-SHA-1")
    assert resolve(m.start(None)).challenge == b""


def test_plain_malformed() -> None:
    server = make_server([])
    with pytest.raises(SASLFailure) as exc:
        resolve(Plain(server.accounts, "localhost").start(b"only-one-part"))
    assert exc.value.condition == "malformed-request"
