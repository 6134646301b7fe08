"""XEP-0198 resumption on whichever cluster node the client reaches (issue 19 item 2,
cluster/handover.py): two nodes on PostgreSQL (then MariaDB) and Redis, a stream-managed raw
client whose session lives on one node and resumes on the other.

Each test counts the messages the server accepted for the user and asserts that none was
lost and none came twice; the state a resumed session keeps (issue 15 A2, checked on one
node by test_resume_state.py) is checked after the move.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_cluster import Cluster, _node, _settled, running
from tests.integration.test_muc_support import PLUGINS as MUC_PLUGINS
from tests.integration.test_muc_support import close, create, messages
from tests.integration.test_resume_state import (
    BLOCKING,
    CARBONS,
    CSI,
    MUC,
    ROSTER,
    USER,
    announce,
    friends,
    ping,
    roster_push,
    sm_barrier,
    sm_login,
)
from tests.support import backends
from tests.support.ca import CertAuthority
from tests.support.client import Client, connect, run, wait_for
from tests.support.raw import NS_SM, C, RawStream, q
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

SMACKS = {"resume_timeout": 60.0, "ack_delay": 0.2}


@pytest.fixture(scope="module", params=["postgres", "mysql"])
def nodes(request: pytest.FixtureRequest, ca: CertAuthority,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two nodes on PostgreSQL, then on MariaDB (offline storage takes what a dead node's
    sessions had not got acknowledged)."""

    redis_url = backends.require("redis")
    tmp = tmp_path_factory.mktemp(f"anywhere-{request.param}")
    prefix = f"xmppd-test-{secrets.token_hex(4)}"
    with backends.database(request.param, tmp) as url:
        procs = []
        for name in ("n1", "n2"):
            node = _node(tmp / name, url, ca, redis_url, prefix, name)
            node.extra["plugins"] = {**node.extra.get("plugins", {}), "smacks": SMACKS}
            node._write_config()
            procs.append(node)
        yield from running(procs, redis_url, prefix)


def bodies(els: list[ET.Element], prefix: str) -> list[str]:
    return [b for e in els if e.tag == C + "message"
            and (b := e.findtext(C + "body") or "").startswith(prefix)]


async def noticed(witness: Client) -> None:
    """The node the witness is on has handled what arrived before this round trip (a
    dropped connection, a routed message)."""
    await witness.plugin["xep_0199"].ping("localhost", timeout=10)


async def authenticated(node: ServerProcess, jid: str) -> RawStream:
    new = await RawStream.open(node.c2s_port)
    await new.authenticate(str(node.ca.ca_file), jid.split("@")[0], node.passwords[jid])
    return new


async def resume_on(node: ServerProcess, jid: str, previd: str, h: int) -> RawStream:
    new = await authenticated(node, jid)
    await new.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='{h}'/>")
    return new


def test_resume_on_the_other_node_sends_the_unacknowledged_once_and_keeps_the_state(
        nodes: Cluster) -> None:
    """The session lives on n1; the client comes back on n2 having handled fewer stanzas
    than it received (h says so): everything after its h is sent again, once, in order,
    followed by what arrived meanwhile; then every piece of session state works on n2."""
    n1, n2 = nodes.n1, nodes.n2
    a, c, e = nodes.new_user("any"), nodes.new_user("anyc"), nodes.new_user("anye")
    room = f"anywhere{secrets.token_hex(4)}@conference.localhost"

    async def body() -> None:
        await friends(n1, a, c)
        cc = await connect(n2, c + "/x")
        ce = await connect(n2, e + "/x")
        owner = await connect(n2, nodes.new_user("own") + "/x", plugins=MUC_PLUGINS)
        messages(owner)
        await create(owner, room, "Owner")
        ra = await sm_login(n1, a)
        previd = ra.previd  # type: ignore[attr-defined]
        await ra.iq(f"<query xmlns='{ROSTER}'/>", id_="roster1")
        await ra.iq(f"<enable xmlns='{CARBONS}'/>", type_="set", id_="carb1")
        await ra.iq(f"<blocklist xmlns='{BLOCKING}'/>", id_="bl1")
        await announce(ra, "<priority>5</priority><status>moving</status>")
        await ra.send(f"<presence to='{e}/x'><status>directed</status></presence>")
        await ce.next_presence(where=lambda p: str(p["from"]) == a + "/r")
        await ra.send(f"<presence to='{room}/Mover'><x xmlns='{MUC}'/></presence>")
        await ra.read_until(lambda el: el.tag == C + "presence" and el.get("from") == (
            f"{room}/Mover") and el.find(f"{{{USER}}}x/{{{USER}}}status[@code='110']")
            is not None)
        a2 = await connect(n2, a + "/two", priority=1)
        got: list[str] = []
        h_after: list[int] = []  # the client's count after each message
        for i in range(5):
            cc.send_message(mto=a + "/r", mbody=f"m{i}", mtype="chat")
        while len(got) < 5:
            got += bodies([await ra.read()], "m")
            h_after += [ra.h] * (len(got) - len(h_after))
        assert got == [f"m{i}" for i in range(5)]
        ra.kill()
        witness = await connect(n1, nodes.new_user("w") + "/x")
        await noticed(witness)  # n1 holds the session hibernating
        for i in range(5, 8):
            cc.send_message(mto=a + "/r", mbody=f"m{i}", mtype="chat")
        await noticed(cc)
        # The client handled only m0..m2 (its h): m3.. must come again, exactly once.
        handled = h_after[2]
        got = got[:3]
        rb = await resume_on(n2, a, previd, handled)
        resumed = await rb.read()
        assert resumed.tag == q(NS_SM, "resumed"), ET.tostring(resumed)
        rb.sm_enabled, rb.h, rb.jid = True, handled, ra.jid
        while len(got) < 8:
            got += bodies([await rb.read()], "m")
        got += bodies(await ping(rb), "m")
        assert got == [f"m{i}" for i in range(8)], got  # none lost, none twice, in order
        await wait_for(lambda: '"node": "n2"' in nodes.registry().get(a + "/r", ""))

        # roster requested: a roster change made elsewhere is pushed to the resumed stream
        item = a2.make_iq_set()
        item.xml.append(ET.fromstring(
            f"<query xmlns='{ROSTER}'><item jid='someone@example.org' name='S'/></query>"))
        await item.send()
        await rb.read_until(roster_push("someone@example.org", "none"))
        # carbons: a copy of a message to a/two
        cc.send_message(mto=a + "/two", mbody="for two", mtype="chat")
        carbon = await rb.read_until(lambda el: el.find(f"{{{CARBONS}}}received") is not None)
        assert carbon.findtext(f".//{C}body") == "for two"
        # blocking list requested: a block push
        block = a2.make_iq_set()
        block.xml.append(ET.fromstring(
            f"<block xmlns='{BLOCKING}'><item jid='spam@example.org'/></block>"))
        await block.send()
        push = await rb.read_until(lambda el: el.tag == C + "iq" and el.get("type") == "set"
                                   and el.find(f"{{{BLOCKING}}}block") is not None)
        assert push.get("type") == "set"
        # presence and priority: the bare JID reaches priority 5, not a/two
        cc.send_message(mto=a, mbody="bare", mtype="chat")
        await rb.read_until(lambda el: el.findtext(C + "body") == "bare")
        # a new resource of the contact gets the kept presence from its probe
        cc2 = await connect(n1, c + "/phone")
        p = await cc2.next_presence(where=lambda p: str(p["from"]) == a + "/r")
        assert p["priority"] == 5 and p["status"] == "moving"
        # room occupancy: still an occupant, may speak; nobody saw it leave
        owner.send_message(mto=room, mbody="still there?", mtype="groupchat")
        await rb.read_until(lambda el: el.findtext(C + "body") == "still there?")
        # CSI: inactive holds a contact's presence update until <active/>
        await rb.send(f"<inactive xmlns='{CSI}'/>")
        await ping(rb)
        cc.send_presence(pshow="away", pstatus="held")
        await noticed(cc)
        await noticed(cc2)
        early = await sm_barrier(rb)
        assert not [el for el in early if el.tag == C + "presence"
                    and el.get("from") == c + "/x"], [ET.tostring(el) for el in early]
        await rb.send(f"<active xmlns='{CSI}'/>")
        held = await rb.read_until(lambda el: el.tag == C + "presence"
                                   and el.get("from") == c + "/x")
        assert held.findtext(C + "status") == "held"
        for client in (ce, owner):
            left = [p for p in _drain(client) if str(p["from"]) in (a + "/r", f"{room}/Mover")
                    and p["type"] == "unavailable"]
            assert not left, left
        # directed presence: revoked when the resumed session ends (RFC 6121 §4.6.3)
        assert await rb.eof()
        gone = await ce.next_presence(where=lambda p: str(p["from"]) == a + "/r")
        assert gone["type"] == "unavailable"
        await close(cc, cc2, ce, owner, a2, witness)

    run(body(), timeout=60)


def _drain(client: Client) -> list[object]:
    seen = []
    while not client.presences.empty():
        seen.append(client.presences.get_nowait())
    return seen


def test_two_concurrent_resumes_one_wins(nodes: Cluster) -> None:
    """XEP-0198 §5: two <resume/> of one session under way at once, one on each node: one
    gets <resumed/> and the unacknowledged message, the other <failed><item-not-found/>.
    To have them overlap for certain, n1 (which holds the session) is paused (SIGSTOP)
    while n2 claims it, and the second <resume/> is sent to n1 before it goes on."""
    import redis

    n1, n2 = nodes.n1, nodes.n2
    a, c = nodes.new_user("race"), nodes.new_user("racec")

    async def body() -> None:
        r = redis.Redis.from_url(nodes.redis_url, decode_responses=True)
        cc = await connect(n2, c + "/x")
        ra = await sm_login(n1, a)
        previd = ra.previd  # type: ignore[attr-defined]
        await announce(ra)
        cc.send_message(mto=a + "/r", mbody="m0", mtype="chat")
        await ra.read_until(lambda el: el.findtext(C + "body") == "m0")
        h = ra.h - 1  # not handled: sent again to the winner
        ra.kill()
        witness = await connect(n1, nodes.new_user("w") + "/x")
        await noticed(witness)
        first, second = await asyncio.gather(authenticated(n2, a), authenticated(n1, a))
        assert n1.proc is not None
        n1.proc.send_signal(signal.SIGSTOP)
        try:
            await first.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='{h}'/>")
            await wait_for(lambda: r.get(f"{nodes.prefix}:sm:{previd}") == "moving:n2")
            await second.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='{h}'/>")
        finally:
            n1.proc.send_signal(signal.SIGCONT)
        won, lost = await first.read(), await second.read()
        assert won.tag == q(NS_SM, "resumed"), ET.tostring(won)
        assert lost.tag == q(NS_SM, "failed"), ET.tostring(lost)
        assert lost.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
        got = bodies([await first.read()], "m") + bodies(await ping(first), "m")
        assert got == ["m0"]  # once
        second.close()
        assert await first.eof()
        await close(cc, witness)
        r.close()

    run(body(), timeout=60)


def test_a_session_redis_forgot_still_resumes_on_its_own_node(nodes: Cluster) -> None:
    """Redis lost the directory entry (a restart without persistence): the node that holds
    the session still resumes it; another node answers <failed><item-not-found/>."""
    import redis

    n1, n2 = nodes.n1, nodes.n2
    a = nodes.new_user("forgot")

    async def body() -> None:
        ra = await sm_login(n1, a)
        previd = ra.previd  # type: ignore[attr-defined]
        await announce(ra)
        ra.kill()
        witness = await connect(n1, nodes.new_user("w") + "/x")
        await noticed(witness)
        r = redis.Redis.from_url(nodes.redis_url)
        r.delete(f"{nodes.prefix}:sm:{previd}")
        elsewhere = await resume_on(n2, a, previd, ra.h)
        failed = await elsewhere.read()
        assert failed.tag == q(NS_SM, "failed"), ET.tostring(failed)
        assert failed.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
        rb = await resume_on(n1, a, previd, ra.h)
        resumed = await rb.read()
        assert resumed.tag == q(NS_SM, "resumed"), ET.tostring(resumed)
        await wait_for(lambda: r.get(f"{nodes.prefix}:sm:{previd}") == b"n1")  # again
        r.close()
        elsewhere.close()
        assert await rb.eof()
        await witness.close()

    run(body(), timeout=60)


def test_a_node_killed_with_a_hibernating_session_loses_no_message(nodes: Cluster) -> None:
    """kill -9 of the node that holds a stream-managed session: the stanzas it had sent but
    the client never acknowledged were copied to Redis as they went out; the node that
    reaps the dead one moves them to offline storage, the <resume/> fails (the session
    ended with its node), and the client, binding again, gets every message it had not
    handled - those and the ones sent after the kill - once: 0 lost, 0 duplicated."""
    import redis

    n1, n2 = nodes.n1, nodes.n2
    a, c = nodes.new_user("killed"), nodes.new_user("killc")
    sent = [f"m{i}" for i in range(13)]

    async def body() -> None:
        r = redis.Redis.from_url(nodes.redis_url)
        cc = await connect(n2, c + "/x")
        ra = await sm_login(n1, a)
        previd = ra.previd  # type: ignore[attr-defined]
        copy = f"{nodes.prefix}:smq:{previd}"
        await announce(ra)
        for text in sent[:5]:
            cc.send_message(mto=a + "/r", mbody=text, mtype="chat")
        handled: list[str] = []
        while len(handled) < 5:
            handled += bodies([await ra.read()], "m")
        await ra.ack()
        await sm_barrier(ra)
        await wait_for(lambda: r.llen(copy) == 0)  # acknowledged: the copy is trimmed
        for text in sent[5:10]:  # sent to the client, never read nor acknowledged by it
            cc.send_message(mto=a + "/r", mbody=text, mtype="chat")
        await wait_for(lambda: r.llen(copy) == 5)
        n1.kill()
        try:
            for text in sent[10:]:
                cc.send_message(mto=a + "/r", mbody=text, mtype="chat")
            await noticed(cc)
            await wait_for(lambda: a + "/r" not in nodes.registry(), timeout=15)  # reaped
            assert r.llen(copy) == 0
            rb = await resume_on(n2, a, previd, ra.h)
            failed = await rb.read()
            assert failed.tag == q(NS_SM, "failed"), ET.tostring(failed)
            assert failed.find(
                "{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
            await rb.bind("again")
            again = bodies(await announce(rb), "m")
            while len(handled) + len(again) < len(sent):
                again += bodies([await rb.read()], "m")
            again += bodies(await ping(rb), "m")
            everything = handled + again
            lost = set(sent) - set(everything)
            duplicated = len(everything) - len(set(everything))
            assert (lost, duplicated) == (set(), 0), everything
            assert await rb.eof()
            await cc.close()
        finally:
            r.close()
            n1.start()
            _settled([n1, n2])  # the next test must not meet a half-seen cluster

    run(body(), timeout=60)


# -- through the real HAProxy (contrib/haproxy/haproxy.cfg) -----------------------------------
@pytest.fixture(scope="module")
def behind_lb(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Cluster, Any]]:
    """Two cluster nodes (PostgreSQL + Redis) whose listeners take the PROXY protocol from
    HAProxy, and HAProxy in front (as tests/integration/test_haproxy.py runs it)."""
    import redis

    from tests.integration import test_haproxy as ha

    ha._require()
    redis_url = backends.require("redis")
    tmp = tmp_path_factory.mktemp("anywhere-lb")
    prefix = f"xmppd-test-{secrets.token_hex(4)}"
    with backends.database("postgres", tmp) as url:
        procs: dict[str, ServerProcess] = {}
        for name in ("node1", "node2"):
            node = _node(tmp / name, url, ca, redis_url, prefix, name)
            node.extra.update(ha.NODE_CONFIG)
            node.extra["plugins"] = {**ha.NODE_CONFIG["plugins"], "smacks": SMACKS}
            node._write_config()
            procs[name] = node.start()
        proxy = None
        try:
            (tmp / "haproxy").mkdir()
            proxy = ha.HAProxy(tmp / "haproxy", procs)
            checked = proxy
            checked.wait("checking every node", lambda: all(
                row["check_status"] == "L7OK" for n in procs for row in checked.servers(n)))
            yield Cluster(list(procs.values()), redis_url, prefix), proxy
        finally:
            if proxy is not None:
                proxy.stop()
            codes = [n.stop() for n in procs.values()]
            r = redis.Redis.from_url(redis_url)
            keys = list(r.scan_iter(f"{prefix}:*"))
            if keys:
                r.delete(*keys)
            r.close()
            for n, code in zip(procs.values(), codes, strict=True):
                assert not n.tracebacks(), "node logged errors"
                assert code == 0, f"node exited with {code}:\n{n.log()[-3000:]}"


def _admin(proxy: Any, command: str) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(proxy.admin))
        sock.sendall(command.encode() + b"\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.decode()


def test_resume_through_haproxy_lands_on_the_other_node(
        behind_lb: tuple[Cluster, Any]) -> None:
    """The deployment the issue describes: the client's connection dies, its node is taken
    out of HAProxy's rotation (maintenance), the client reconnects through HAProxy, lands
    on the other node and resumes there; what it had not handled comes again, once."""
    from tests.integration.test_haproxy import CLIENT

    cluster, proxy = behind_lb
    a, c, w = cluster.new_user("lb"), cluster.new_user("lbc"), cluster.new_user("lbw")
    port = proxy.port("c2s")

    async def through_lb(jid: str, resource: str) -> RawStream:
        raw = await RawStream.open(port, source=CLIENT)
        await raw.login(str(cluster.n1.ca.ca_file), jid.split("@")[0],
                        cluster.n1.passwords[jid], resource=resource)
        return raw

    def node_of(full: str) -> str:
        return str(json.loads(cluster.registry()[full])["node"])

    async def body() -> None:
        ra = await through_lb(a, "r")
        enabled = await ra.enable_sm(resume=True)
        previd = enabled.get("id")
        await announce(ra)
        owner = node_of(a + "/r")
        rc = await through_lb(c, "x")
        # a witness on the owning node: its ping is a barrier for what that node handles
        rw = await through_lb(w, "x")
        while node_of(w + "/x") != owner:
            rw.close()
            rw = await through_lb(w, "x")
        for i in range(3):
            await rc.send(f"<message to='{a}/r' type='chat'><body>m{i}</body></message>")
        got: list[str] = []
        h_after: list[int] = []
        while len(got) < 3:
            got += bodies([await ra.read()], "m")
            h_after += [ra.h] * (len(got) - len(h_after))
        handled = h_after[1]  # m2 not handled by the client
        got = got[:2]
        ra.kill()
        await ping(rw)
        await rc.send(f"<message to='{a}/r' type='chat'><body>m3</body></message>")
        await ping(rc)
        for backend in ("xmpp_c2s", "xmpp_c2s_tls"):
            _admin(proxy, f"set server {backend}/{owner} state maint")
        try:
            rb = await RawStream.open(port, source=CLIENT)
            await rb.authenticate(str(cluster.n1.ca.ca_file), a.split("@")[0],
                                  cluster.n1.passwords[a])
            await rb.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='{handled}'/>")
            resumed = await rb.read()
            assert resumed.tag == q(NS_SM, "resumed"), ET.tostring(resumed)
            while len(got) < 4:
                got += bodies([await rb.read()], "m")
            got += bodies(await ping(rb), "m")
            assert got == ["m0", "m1", "m2", "m3"], got
            assert node_of(a + "/r") != owner
            assert await rb.eof()
        finally:
            for backend in ("xmpp_c2s", "xmpp_c2s_tls"):
                _admin(proxy, f"set server {backend}/{owner} state ready")
        rc.close()
        rw.close()

    run(body(), timeout=60)
