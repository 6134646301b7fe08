"""The operation registry: one definition per operation, checked the same way whatever the
values came from (form, control request, command line); the control request parser."""

from __future__ import annotations

from typing import Any

import pytest

from xmppd import ops
from xmppd.config import from_dict
from xmppd.control import parse_request
from xmppd.jid import JID

CFG = from_dict({"hosts": {"a.example": {}, "b.example": {}},
                 "storage": {"url": "sqlite://"}})


def ctx(domain: str | None = None) -> ops.Context:
    return ops.Context(CFG, storage=None, accounts=None, domain=domain)  # type: ignore[arg-type]


def parse(name: str, raw: dict[str, list[str]], domain: str | None = None) -> dict[str, Any]:
    return ops.parse(ops.get(name), raw, ctx(domain))


def refused(name: str, raw: dict[str, list[str]], domain: str | None = None) -> ops.OpError:
    with pytest.raises(ops.OpError) as exc:
        parse(name, raw, domain)
    return exc.value


def test_every_xep0133_node_has_one_operation() -> None:
    names = [op.name for op in ops.operations()]
    assert len(names) == len(set(names))
    nodes = [n for op in ops.operations() for n in (op.node, *op.aliases) if n]
    assert len(nodes) == len(set(nodes))
    cli = [op.cli_name for op in ops.operations() if op.cli_name]
    assert len(cli) == len(set(cli))
    for suffix in ("add-user", "delete-user", "disable-user", "reenable-user",
                   "end-user-session", "change-user-password", "get-user-roster",
                   "get-user-lastlogin", "user-stats", "get-registered-users-num",
                   "get-registered-users-list", "get-online-users-num",
                   "get-online-users-list", "get-active-users-num", "get-active-users-list",
                   "get-idle-users-num", "get-idle-users-list", "announce", "set-motd",
                   "edit-motd", "delete-motd", "set-welcome", "delete-welcome", "edit-admin",
                   "restart", "shutdown"):
        assert ops.by_node(f"{ops.NS_ADMIN}#{suffix}") is not None, suffix
    for op in ops.operations():
        for p in op.params:
            assert p.type in ("jid-single", "jid-multi", "text-single", "text-multi",
                              "text-private", "list-single", "boolean"), (op.name, p)


def test_jids_are_checked_against_the_hosts() -> None:
    args = parse("delete-user", {"accountjids": ["Alice@A.Example", "bob@b.example",
                                                 "alice@a.example"]})
    assert args["accountjids"] == [JID("alice", "a.example"), JID("bob", "b.example")]
    err = refused("delete-user", {"accountjids": ["bob@b.example"]}, domain="a.example")
    assert err.field == "accountjids" and "not an account of this service" in err.text
    for bad in ("x@@y", "a.example", "u@a.example/res", "", "  "):
        err = refused("delete-user", {"accountjids": [bad]})
        assert err.condition == "bad-request" and err.field == "accountjids", bad
    full = parse("end-user-session", {"accountjids": ["u@a.example/phone"]})
    assert full["accountjids"][0].resource == "phone"
    admins = parse("edit-admin", {"adminjids": ["someone@elsewhere.example"]})
    assert admins["adminjids"] == [JID("someone", "elsewhere.example")]
    assert refused("edit-admin", {"adminjids": ["x@y/z"]}).field == "adminjids"


def test_values_are_checked() -> None:
    assert refused("change-user-password", {"accountjid": ["u@a.example"]}).field == "password"
    err = refused("change-user-password", {"accountjid": ["u@a.example", "v@a.example"],
                                           "password": ["x"]})
    assert "takes one value" in err.text
    assert parse("get-registered-users-list", {"max_items": ["none"]})["max_items"] is None
    assert parse("get-registered-users-list", {"max_items": ["25"]})["max_items"] == 25
    assert parse("get-registered-users-list", {})["max_items"] is None
    assert refused("get-registered-users-list", {"max_items": ["26"]}).field == "max_items"
    assert parse("shutdown", {"delay": ["120"], "announcement": ["a", "b"]}) == {
        "delay": 120, "announcement": "a\nb"}
    assert refused("set-motd", {"motd": ["", "  "]}).field == "motd"
    assert refused("set-motd", {"motd": ["x" * 70000]}).field == "motd"
    assert refused("delete-user", {"accountjids": ["u@a.example"] * 10001}).field


async def _never(ctx: ops.Context) -> ops.Result:
    raise AssertionError("must not run")


def test_online_only_operations_refuse_to_run_offline() -> None:
    from twisted.internet.defer import Deferred

    results: list[Any] = []
    d = Deferred.fromCoroutine(ops.execute(ops.get("end-user-session"), ctx(),
                                           {"accountjids": ["u@a.example"]}))
    d.addErrback(lambda f: results.append(f.value))
    assert isinstance(results[0], ops.OpError)
    assert results[0].condition == "service-unavailable"


def test_results_survive_json() -> None:
    r = ops.Result("hello", table=ops.Table([("a", "A")], [{"a": "1"}]), warnings=["w"])
    r.add("v", "V", "jid-multi", ["x@y", "z@y"])
    assert ops.Result.from_json(r.to_json()) == r


@pytest.mark.parametrize("line,condition", [
    (b"nonsense", "bad-request"),
    (b'"a string"', "bad-request"),
    (b'{"args": {}}', "bad-request"),
    (b'{"op": "stats", "extra": 1}', "bad-request"),
    (b'{"op": "nope"}', "item-not-found"),
    (b'{"op": "delete-user", "args": []}', "bad-request"),
    (b'{"op": "delete-user", "args": {"jids": ["x"]}}', "bad-request"),
    (b'{"op": "sessions", "domain": "c.example"}', "bad-request"),
])
def test_control_requests_are_checked(line: bytes, condition: str) -> None:
    with pytest.raises(ops.OpError) as exc:
        parse_request(line, CFG)
    assert exc.value.condition == condition


def test_control_request() -> None:
    op, args, domain = parse_request(
        b'{"op": "delete-user", "args": {"accountjids": ["u@a.example"]}, '
        b'"domain": "a.example"}', CFG)
    assert op.name == "delete-user" and args == {"accountjids": ["u@a.example"]}
    assert domain == "a.example"
    assert ops.normalise(["a", 1]) == ["a", "1"] and ops.normalise(True) == ["true"]
    with pytest.raises(ops.OpError):
        ops.normalise({"a": 1})
