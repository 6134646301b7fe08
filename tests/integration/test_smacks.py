"""No message is ever lost: XEP-0198 under fault injection, offline fallback, restarts.

The receiver is a raw client so that the test controls exactly what it acknowledges and
when its TCP connection dies; the senders are slixmpp clients or raw clients with SM.
"""

from __future__ import annotations

import asyncio
import signal
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from tests.conftest import start_server
from tests.support.barrier import barrier, drain
from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.raw import NS_SM, C, RawStream, q
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
NS_MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"


@pytest.fixture(scope="module")
def srv(backend: str, ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp(f"sm-{backend}"), backend, ca, config={
        # The resumption timeout itself: tests/unit/test_smacks_timeouts.py on a Clock.
        "plugins": {"smacks": {"resume_timeout": 60.0, "ack_delay": 0.2}}})


def is_chat(el: ET.Element) -> bool:
    return el.tag == C + "message" and el.get("type") == "chat"


def body(el: ET.Element) -> str:
    b = el.find(C + "body")
    return b.text or "" if b is not None else ""


async def receiver(srv: ServerProcess, jid: str, pw: str, resource: str = "r") -> RawStream:
    raw = await RawStream.open(srv.c2s_port)
    await raw.login(str(srv.ca.ca_file), jid.split("@")[0], pw, resource=resource)
    enabled = await raw.enable_sm(resume=True)
    assert enabled.tag == q(NS_SM, "enabled") and enabled.get("resume") == "true"
    raw.previd = enabled.get("id")  # type: ignore[attr-defined]
    await raw.send("<presence/>")
    await raw.read_until(lambda e: e.tag == C + "presence")  # our own presence, echoed
    return raw


async def archive_bodies(srv: ServerProcess, jid: str, pw: str, page: int = 50) -> list[str]:
    """Page through the whole archive with RSM like a new device would (XEP-0313 §4)."""
    raw = await RawStream.open(srv.c2s_port)
    await raw.login(str(srv.ca.ca_file), jid.split("@")[0], pw, resource="newdevice")
    out: list[str] = []
    after = ""
    for n in range(1000):
        rsm = f"<set xmlns='{RSM}'><max>{page}</max>" + (
            f"<after>{after}</after>" if after else "") + "</set>"
        await raw.send(f"<iq type='set' id='mam{n}'><query xmlns='{NS_MAM}' queryid='q{n}'>"
                       f"{rsm}</query></iq>")
        while True:
            el = await raw.read()
            if el.tag == C + "message":
                fwd = el.find(f"{{{NS_MAM}}}result/{{urn:xmpp:forward:0}}forwarded/{C}message")
                assert fwd is not None
                out.append(body(fwd))
            elif el.tag == C + "iq" and el.get("id") == f"mam{n}":
                break
        fin = el.find(f"{{{NS_MAM}}}fin")
        assert fin is not None, ET.tostring(el)
        last = fin.find(f"{{{RSM}}}set/{{{RSM}}}last")
        if fin.get("complete") == "true":
            break
        assert last is not None and last.text
        after = last.text
    raw.close()
    return out


def test_resume_after_tcp_drop_delivers_everything_once(srv: ServerProcess) -> None:
    a, _ = srv.new_user("snd")
    b, bpw = srv.new_user("rcv")

    async def scenario() -> None:
        sender = await connect(srv, a)
        raw = await receiver(srv, b, bpw)
        got: list[str] = []
        for i in range(100):
            sender.send_message(mto=b + "/r", mbody=f"m{i:03}", mtype="chat")
        while len(got) < 40:
            got.append(body(await raw.read_until(is_chat)))
        await raw.ack()
        raw.kill()  # dies with up to 60 messages written to it but never read
        for i in range(100, 200):
            sender.send_message(mto=b + "/r", mbody=f"m{i:03}", mtype="chat")
        await barrier(sender)  # all routed (to the dead stream or the hibernating session)
        new = await RawStream.open(srv.c2s_port)
        await new.authenticate(str(srv.ca.ca_file), b.split("@")[0], bpw)
        await new.send(f"<resume xmlns='{NS_SM}' previd='{raw.previd}' h='{raw.h}'/>")  # type: ignore[attr-defined]
        resumed = await new.read()
        assert resumed.tag == q(NS_SM, "resumed"), ET.tostring(resumed)
        new.sm_enabled, new.h = True, raw.h
        while len(got) < 200:
            got.append(body(await new.read_until(is_chat)))
        assert got == [f"m{i:03}" for i in range(200)]
        assert not [el for el in await new.barrier() if is_chat(el)]  # and nothing twice
        # the archive has each message exactly once, and a new device can page it all
        assert await archive_bodies(srv, b, bpw) == [f"m{i:03}" for i in range(200)]
        await new.send(f"<r xmlns='{NS_SM}'/>")
        a_el = await new.read_until(lambda e: e.tag == q(NS_SM, "a"))
        # counting continues: the initial presence, then the barrier's ping
        assert int(a_el.get("h", "-1")) == 2
        assert await new.eof()  # a clean close: no session left hibernating
        await sender.close()

    run(scenario(), timeout=120)


def test_unacknowledged_no_store_message_does_not_take_the_others_down(
        srv: ServerProcess) -> None:
    """A session ends with two unacknowledged messages; offline storage refuses the first
    (a no-store hint, XEP-0334 §4.2): its sender gets the error and the second is still
    stored (XEP-0198 §5). The refusal escaped the rescue loop (found by tests/fuzz): a
    traceback, no error for the sender, and every later message of the queue lost."""
    a, _ = srv.new_user("snd")
    b, bpw = srv.new_user("rcv")

    async def scenario() -> None:
        sender = await connect(srv, a)
        raw = await RawStream.open(srv.c2s_port)
        await raw.login(str(srv.ca.ca_file), b.split("@")[0], bpw, resource="r")
        enabled = await raw.enable_sm(resume=False)
        assert enabled.tag == q(NS_SM, "enabled")
        await raw.send("<presence/>")
        await raw.read_until(lambda e: e.tag == C + "presence")
        hinted = sender.make_message(mto=b + "/r", mbody="ephemeral", mtype="chat")
        hinted.append(ET.Element("{urn:xmpp:hints}no-store"))
        hinted.send()
        sender.send_message(mto=b + "/r", mbody="keep me", mtype="chat")
        assert [body(await raw.read_until(is_chat)) for _ in range(2)] == [
            "ephemeral", "keep me"]
        raw.kill()  # never acknowledged; no resumption was asked for: the session ends
        err = await sender.next_message(timeout=15, where=lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "service-unavailable"
        late = await RawStream.open(srv.c2s_port)
        await late.login(str(srv.ca.ca_file), b.split("@")[0], bpw, resource="again")
        await late.send("<presence/>")
        el = await late.read_until(is_chat)
        assert body(el) == "keep me" and el.find("{urn:xmpp:delay}delay") is not None
        await sender.close()

    run(scenario(), timeout=120)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_server_restart_keeps_every_acknowledged_message(
        backend: str, ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory,
        sig: signal.Signals) -> None:
    gen = start_server(tmp_path_factory.mktemp(f"restart-{backend}"), backend, ca)
    srv = next(gen)
    try:
        a, apw = srv.new_user("snd")
        b, bpw = srv.new_user("rcv")
        acked = 0

        async def flow() -> None:
            # Bursts of ten messages, each followed by <r/>; the next burst goes once the
            # server acknowledged the last (so several are in flight, and the pace follows
            # the server's commits, not a timer). The server is stopped during burst 15.
            nonlocal acked
            raw = await RawStream.open(srv.c2s_port)
            await raw.login(str(srv.ca.ca_file), a.split("@")[0], apw, resource="s")
            await raw.enable_sm(resume=False)
            loop = asyncio.get_running_loop()
            killer = None
            sent = 0
            try:
                for burst in range(40):
                    if burst == 15:
                        killer = loop.run_in_executor(None, srv.stop, sig)
                    await raw.send("".join(
                        f"<message to='{b}' type='chat'><body>m{i:03}</body></message>"
                        f"<r xmlns='{NS_SM}'/>" for i in range(sent, sent + 10)))
                    sent += 10
                    while acked < sent:
                        el = await raw.read(timeout=30)
                        if el.tag == q(NS_SM, "a"):
                            acked = max(acked, int(el.get("h", "0")))
                        elif el.tag == "__stream_end__" or el.tag.endswith("}error"):
                            raise ConnectionError(el.tag)
            except (ConnectionError, OSError, Exception):
                pass  # the server went away mid-flow, as intended
            if killer is not None:
                await killer

        run(flow(), timeout=120)
        assert acked > 100, "the server acknowledged too little for the test to mean much"
        srv.start()

        async def check() -> None:
            raw = await RawStream.open(srv.c2s_port)
            await raw.login(str(srv.ca.ca_file), b.split("@")[0], bpw, resource="r")
            await raw.send("<presence/>")
            # the queue is drained while the presence is handled: all of it is here
            got = [body(el) for el in await raw.barrier() if is_chat(el)]
            assert len(got) == len(set(got)), "a message was delivered twice"
            missing = [f"m{i:03}" for i in range(acked) if f"m{i:03}" not in got]
            assert not missing, f"acknowledged but lost: {missing[:5]}..."
            assert got == sorted(got)

        run(check(), timeout=60)
    finally:
        gen.close()


def test_sm_bad_input(srv: ServerProcess) -> None:
    a, apw = srv.new_user("x")
    b, bpw = srv.new_user("y")

    async def scenario() -> None:
        raw = await receiver(srv, a, apw)
        # enabling twice fails (XEP-0198 §3)
        await raw.send(f"<enable xmlns='{NS_SM}'/>")
        failed = await raw.read_until(lambda e: e.tag.startswith("{" + NS_SM))
        assert failed.tag == q(NS_SM, "failed")
        # resuming an unknown id, or someone else's, fails with item-not-found
        other = await RawStream.open(srv.c2s_port)
        await other.authenticate(str(srv.ca.ca_file), b.split("@")[0], bpw)
        for previd in ("no-such-id", raw.previd):  # type: ignore[attr-defined]
            await other.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='0'/>")
            el = await other.read()
            assert el.tag == q(NS_SM, "failed")
            assert el.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
        # acknowledging more than was sent is a stream error (§4)
        await raw.send(f"<a xmlns='{NS_SM}' h='{raw.h + 1000}'/>")
        assert await raw.stream_error() == "undefined-condition"

    run(scenario())


def test_carbons_and_csi(srv: ServerProcess) -> None:
    a, _ = srv.new_user("a")
    b, _ = srv.new_user("b")

    async def scenario() -> None:
        a1 = await connect(srv, a + "/one", plugins=("xep_0280",))
        a2 = await connect(srv, a + "/two", plugins=("xep_0280",))
        a3 = await connect(srv, a + "/nocarbons")
        cb = await connect(srv, b + "/x")
        await a1.plugin["xep_0280"].enable()
        await a2.plugin["xep_0280"].enable()
        received: list[str] = []
        sent: list[str] = []
        a2.add_event_handler("carbon_received",
                             lambda m: received.append(m["carbon_received"]["body"]))
        a2.add_event_handler("carbon_sent", lambda m: sent.append(m["carbon_sent"]["body"]))
        cb.send_message(mto=a + "/one", mbody="to one", mtype="chat")
        await a1.next_message(where=lambda m: m["body"] == "to one")
        a1.send_message(mto=b, mbody="from one", mtype="chat")
        await cb.next_message(where=lambda m: m["body"] == "from one")
        m = a1.make_message(mto=b, mbody="private one", mtype="chat")
        m.xml.append(ET.Element("{urn:xmpp:carbons:2}private"))
        m.send()
        await cb.next_message(where=lambda m: m["body"] == "private one")
        await barrier(a2, a3)  # the carbons were written to a2 before cb got the originals
        assert received == ["to one"] and sent == ["from one"]
        assert not [m for m in drain(a3.messages) if m["body"]]
        for c in (a1, a2, a3, cb):
            await c.close()

    run(scenario())
