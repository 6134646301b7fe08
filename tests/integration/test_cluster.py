"""Two xmppd nodes sharing PostgreSQL and Redis (xmppd/cluster.py), with real clients on each.

Every test puts the two parties of an exchange on different nodes: routing, presence,
roster pushes, carbons, blocking, offline storage, resource conflicts, rooms, and a node
that dies without a word.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from slixmpp.exceptions import IqError

from tests.integration.test_muc_support import (
    PLUGINS,
    codes,
    configure,
    create,
    iq,
    join,
    messages,
    new_room,
)
from tests.integration.test_muc_support import next_message as room_message
from tests.integration.test_presence import befriend
from tests.support import backends
from tests.support.barrier import barrier, barrier_to, drain
from tests.support.ca import CertAuthority
from tests.support.client import Client, connect, run, wait_for
from tests.support.metrics import fetch, parse, sample
from tests.support.raw import RawStream
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


class Cluster:
    def __init__(self, nodes: list[ServerProcess], redis_url: str, prefix: str) -> None:
        self.nodes = nodes
        self.redis_url = redis_url
        self.prefix = prefix

    @property
    def n1(self) -> ServerProcess:
        return self.nodes[0]

    @property
    def n2(self) -> ServerProcess:
        return self.nodes[1]

    def new_user(self, prefix: str) -> str:
        jid, password = self.n1.new_user(prefix)
        for n in self.nodes[1:]:
            n.passwords[jid] = password
        return jid

    def registry(self) -> dict[str, str]:
        """full JID -> state JSON of every resource the cluster has registered."""
        r = redis.Redis.from_url(self.redis_url, decode_responses=True)
        try:
            out: dict[str, str] = {}
            for key in r.scan_iter(f"{self.prefix}:u:*"):
                bare = key.split(":u:", 1)[1]
                for resource, state in r.hgetall(key).items():  # type: ignore[union-attr]
                    out[f"{bare}/{resource}"] = state
            return out
        finally:
            r.close()


@pytest.fixture(scope="module")
def cluster(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    redis_url = backends.require("redis")
    tmp = tmp_path_factory.mktemp("cluster")
    prefix = f"xmppd-test-{secrets.token_hex(4)}"
    with backends.database("postgres", tmp) as url:
        nodes = [_node(tmp / name, url, ca, redis_url, prefix, name) for name in ("n1", "n2")]
        yield from running(nodes, redis_url, prefix)


def running(nodes: list[ServerProcess], redis_url: str, prefix: str) -> Iterator[Cluster]:
    """Start the nodes, yield them once each counts the whole cluster; stop them, clear the
    cluster's Redis keys and insist no node logged errors or exited badly."""
    for n in nodes:
        n.start()
    try:
        _settled(nodes)
        yield Cluster(nodes, redis_url, prefix)
    finally:
        codes = [n.stop() for n in nodes]
        r = redis.Redis.from_url(redis_url)
        keys = list(r.scan_iter(f"{prefix}:*"))
        if keys:
            r.delete(*keys)
        r.close()
        for n, code in zip(nodes, codes, strict=True):
            problems = n.tracebacks()
            assert not problems, "node logged errors:\n" + "\n".join(problems)
            assert code == 0, f"node exited with {code}:\n{n.log()[-3000:]}"


def _node(tmp: Path, url: str, ca: CertAuthority, redis_url: str, prefix: str,
          name: str) -> ServerProcess:
    tmp.mkdir(parents=True, exist_ok=True)
    return ServerProcess(tmp, url, ca, config={"cluster": {
        "redis_url": redis_url, "prefix": prefix, "node": name, "heartbeat": 0.5,
        "node_timeout": 2.0}})


async def _two(cluster: Cluster, pa: str = "alice", pb: str = "bob"
               ) -> tuple[str, Client, str, Client]:
    a, b = cluster.new_user(pa), cluster.new_user(pb)
    ca = await connect(cluster.n1, a + "/desk", plugins=("xep_0280", "xep_0191"))
    cb = await connect(cluster.n2, b + "/phone", plugins=("xep_0280", "xep_0191"))
    return a, ca, b, cb


def test_roster_presence_and_chat_across_nodes(cluster: Cluster) -> None:
    async def body() -> None:
        a, ca, b, cb = await _two(cluster)
        assert {f"{a}/desk", f"{b}/phone"} <= set(cluster.registry())
        await befriend(ca, cb)  # subscription requests and roster pushes cross nodes
        cb.send_presence(pshow="away", pstatus="at lunch")
        p = await ca.next_presence(where=lambda p: p["from"] == cb.boundjid
                                   and p["show"] == "away")
        assert p["status"] == "at lunch"
        for x, y, text in ((ca, cb, "hello from n1"), (cb, ca, "hello from n2")):
            x.send_message(mto=y.boundjid.bare, mbody=text, mtype="chat")
            m = await y.next_message(where=lambda m, t=text: m["body"] == t)
            assert m["from"] == x.boundjid
        # an IQ to a full JID on the other node, and its answer back (RFC 6121 §8.5.3.1)
        await ca.plugin["xep_0199"].ping(cb.boundjid, timeout=10)
        # bob's second resource on the other node sees alice's message too (bare JID, equal
        # priority: RFC 6121 §8.5.2.1.1)
        cb2 = await connect(cluster.n1, b + "/tablet")
        ca.send_message(mto=b, mbody="to both", mtype="chat")
        for c in (cb, cb2):
            await c.next_message(where=lambda m: m["body"] == "to both")
        await cb.close()
        p = await ca.next_presence(where=lambda p: p["from"] == f"{b}/phone"
                                   and p["type"] == "unavailable")
        assert f"{b}/phone" not in cluster.registry()
        await cb2.close()
        await ca.close()

    run(body())


def test_carbons_from_the_other_node(cluster: Cluster) -> None:
    async def body() -> None:
        a, ca, _b, cb = await _two(cluster)
        ca2 = await connect(cluster.n2, a + "/laptop", plugins=("xep_0280",))
        messages(ca2)  # every message, carbons included (slixmpp's handler takes those)
        await ca2.plugin["xep_0280"].enable()
        await barrier_to(ca2, ca)  # the flag reached n1's view of ca2 (n2 published it first)
        cb.send_message(mto=f"{a}/desk", mbody="direct to desk", mtype="chat")
        await ca.next_message(where=lambda m: m["body"] == "direct to desk")
        carbon = await room_message(
            ca2, where=lambda m: m.xml.find("{urn:xmpp:carbons:2}received") is not None)
        assert "direct to desk" in str(carbon)
        for c in (ca, ca2, cb):
            await c.close()

    run(body())


def test_offline_message_is_kept_for_a_user_who_logs_in_on_the_other_node(
        cluster: Cluster) -> None:
    async def body() -> None:
        _a, ca, b, cb = await _two(cluster)
        await cb.close()
        ca.send_message(mto=b, mbody="while you were out", mtype="chat")
        await barrier(ca)
        cb = await connect(cluster.n1, b + "/back")
        m = await cb.next_message(where=lambda m: m["body"] == "while you were out")
        assert m.xml.find("{urn:xmpp:delay}delay") is not None
        await ca.close()
        await cb.close()

    run(body())


def test_resource_conflict_across_nodes(cluster: Cluster) -> None:
    async def body() -> None:
        b = cluster.new_user("conflict")
        first = await connect(cluster.n1, b + "/same")
        second = await connect(cluster.n2, b + "/same")
        await asyncio.wait_for(first.gone, 10)
        assert "conflict" in first.stream_errors
        assert second.is_connected()
        reg = cluster.registry()
        assert '"node": "n2"' in reg[f"{b}/same"]
        await second.close()

    run(body())


async def until_reachable(x: Client, y: Client, reachable: bool, timeout: float = 15.0
                          ) -> None:
    """Ping y's full JID from x until it is answered (or refused, if not ``reachable``). A
    node that learns of another's blocklist change reloads the list from storage and keeps
    the old one in force until then (plugins/blocking.py), so no barrier says when the new
    one applies there: each probe is a round trip, and the loop ends on the answer."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await x.plugin["xep_0199"].send_ping(y.boundjid.full, timeout=timeout)
            answered = True
        except IqError:
            answered = False
        if answered == reachable:
            return
        assert asyncio.get_running_loop().time() < deadline, f"still reachable={answered}"


def test_blocking_applies_on_the_other_node(cluster: Cluster) -> None:
    async def body() -> None:
        a, ca, b, cb = await _two(cluster)
        await cb.plugin["xep_0191"].block(a)
        await until_reachable(ca, cb, False)
        ca.send_message(mto=b, mbody="can you hear me", mtype="chat")
        err = await ca.next_message(where=lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "service-unavailable"
        await barrier(cb)
        assert not [m for m in drain(cb.messages) if m["body"] == "can you hear me"]
        await cb.plugin["xep_0191"].unblock(a)
        await until_reachable(ca, cb, True)
        ca.send_message(mto=b, mbody="and now", mtype="chat")
        await cb.next_message(where=lambda m: m["body"] == "and now")
        await ca.close()
        await cb.close()

    run(body())


def test_room_with_occupants_on_both_nodes(cluster: Cluster) -> None:
    async def body() -> None:
        room = new_room()
        a, b, c = (cluster.new_user(p) for p in ("own", "occ", "occ"))
        owner = await connect(cluster.n1, a + "/r", plugins=PLUGINS)
        o2 = await connect(cluster.n2, b + "/r", plugins=PLUGINS)
        o3 = await connect(cluster.n1, c + "/r", plugins=PLUGINS)
        for cl in (owner, o2, o3):
            messages(cl)
        await create(owner, room, "Owner")
        for cl, nick in ((o2, "Two"), (o3, "Three")):
            pres = await join(cl, room, nick)
            assert 110 in codes(pres)
        owner.send_message(mto=room, mbody="everyone?", mtype="groupchat")
        for cl in (owner, o2, o3):
            m = await room_message(cl, where=lambda m: m["body"] == "everyone?")
            assert str(m["from"]) == f"{room}/Owner"
        # o2 disconnects without leaving: the room (on whichever node) drops it (§18.1.2)
        await o2.close()
        p = await o3.next_presence(where=lambda p: str(p["from"]) == f"{room}/Two")
        assert p["type"] == "unavailable"
        for cl in (owner, o3):
            await cl.close()

    run(body())


def test_an_administrator_on_one_node_ends_a_session_on_the_other(cluster: Cluster) -> None:
    """`xmppd kick` on n1 ends a session bound on n2 for good: n2 does not keep it for
    XEP-0198 resumption, so it leaves the cluster's registry."""
    user = cluster.new_user("kicked")

    async def body() -> None:
        raw = await RawStream.open(cluster.n2.c2s_port)
        full = await raw.login(str(cluster.n2.ca.ca_file), user.split("@")[0],
                               cluster.n2.passwords[user], resource="far")
        assert (await raw.enable_sm(resume=True)).get("resume") == "true"
        await wait_for(lambda: full in cluster.registry())
        r = await asyncio.to_thread(cluster.n1.cli, "kick", user)
        assert r.returncode == 0 and "ended 1 session" in r.stdout, r.stdout + r.stderr
        assert await raw.stream_error() == "policy-violation"
        raw.close()
        await wait_for(lambda: full not in cluster.registry())

    run(body())


def test_a_node_that_dies_takes_its_sessions_with_it(cluster: Cluster) -> None:
    """SIGKILL one node: the other ends its resources (contacts see them unavailable), then
    a message to such a user is stored offline, not handed to the dead node. Its metrics
    count the nodes it believes alive."""
    async def body() -> None:
        _a, ca, b, cb = await _two(cluster, "survivor", "victim")
        await befriend(ca, cb)
        assert await asyncio.to_thread(_cluster_nodes, cluster.n1) == 2
        cluster.n2.kill()
        try:
            p = await ca.next_presence(timeout=15, where=lambda p: p["from"] == cb.boundjid
                                       and p["type"] == "unavailable")
            assert p["type"] == "unavailable"
            assert await asyncio.to_thread(_cluster_nodes, cluster.n1) == 1
            assert f"{b}/phone" not in cluster.registry()
            ca.send_message(mto=b, mbody="are you there", mtype="chat")
            await barrier(ca)  # stored offline by n1, which knows n2 is gone
            cb.abort()
            again = await connect(cluster.n1, b + "/phone")
            await again.next_message(where=lambda m: m["body"] == "are you there")
            await again.close()
            await ca.close()
        finally:
            _restart(cluster, cluster.n2)

    run(body(), timeout=90)


def _restart(cluster: Cluster, node: ServerProcess) -> None:
    """Start a killed node again and return once every node counts the whole cluster: a
    test after this one places rooms by the node set, and a node still missing from another
    node's view would put a room in two places (CI run: 'no such room' on n2 for a room n1
    had created while it did not see n2 yet)."""
    node.start()
    _settled(cluster.nodes)


def _settled(nodes: list[ServerProcess]) -> None:
    deadline = time.monotonic() + 30
    while not all(_cluster_nodes(n) == len(nodes) for n in nodes):
        assert time.monotonic() < deadline, "the nodes did not see each other within 30 s"
        time.sleep(0.05)  # a poll of the nodes' own metric, not synchronisation of a stream


def _cluster_nodes(node: ServerProcess) -> float:
    """xmppd_cluster_nodes from the node's /metrics (loopback may read it by default)."""
    resp = fetch(node.https_port, tls_ca=str(node.ca.ca_file))
    assert resp.status == 200, resp
    return sample(parse(resp.body), "xmppd_cluster_nodes")


def _room_owned_by(node: str, nodes: tuple[str, ...] = ("n1", "n2")) -> str:
    """A fresh room name that rendezvous hashing places on ``node`` (xmppd/cluster.py)."""
    while True:
        room = new_room()
        if max(nodes, key=lambda n: hashlib.sha1(f"{n}|{room}".encode()).digest()) == node:
            return room


def test_a_room_moves_to_the_surviving_node_with_its_latest_configuration(
        cluster: Cluster) -> None:
    """The room lives on n2; its owner (on n1) renames it; n2 dies. n1 now serves the room
    from storage, with the new name (not the copy it loaded when it started)."""
    info_ns = "http://jabber.org/protocol/disco#info"

    async def body() -> None:
        room = _room_owned_by("n2")
        owner = await connect(cluster.n1, cluster.new_user("mover") + "/r", plugins=PLUGINS)
        messages(owner)
        await create(owner, room, "O", {"persistentroom": "1", "roomname": "First"})
        await configure(owner, room, {"persistentroom": "1", "roomname": "Second"})
        cluster.n2.kill()
        try:
            # n1 counts n2 as gone once its heartbeat is older than node_timeout (2 s)
            async def one_node() -> bool:
                return await asyncio.to_thread(_cluster_nodes, cluster.n1) == 1

            await wait_for(one_node, timeout=30)
            info = await iq(owner, "get", room, f"<query xmlns='{info_ns}'/>")
            ident = info.find(f"{{{info_ns}}}query/{{{info_ns}}}identity")
            assert ident is not None and ident.get("name") == "Second"
            await owner.close()
        finally:
            _restart(cluster, cluster.n2)

    run(body(), timeout=90)
