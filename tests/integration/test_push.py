"""XEP-0357 push notifications against the real server process. The app server is written
here as a XEP-0114 component that records every publish it gets and answers as the test
says; users are raw clients, so the test controls presence, XEP-0198 and XEP-0352 exactly."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from storage.facade import Storage
from storage.push import PushRegistration
from storage.sql import Database
from tests.conftest import start_server
from tests.storage.test_contract import done
from tests.support.ca import CertAuthority
from tests.support.client import run, wait_for
from tests.support.component import A, RawComponent
from tests.support.raw import NS_SM, C, RawStream, q, stanza_error
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
PUSH, SECRET = "push.localhost", "push-secret"
NS_PUSH = "urn:xmpp:push:0"
PS = "http://jabber.org/protocol/pubsub"
XD = "jabber:x:data"
DISCO = "http://jabber.org/protocol/disco#info"
OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"


def config(**push: object) -> dict[str, object]:
    return {
        "listeners": [{"type": "c2s", "port": 0, "address": "127.0.0.1"},
                      {"type": "c2s_tls", "port": 0, "address": "127.0.0.1"},
                      {"type": "component", "port": 0, "address": "127.0.0.1"}],
        "components": {PUSH: {"secret": SECRET}},
        "plugins": {"smacks": {"resume_timeout": 60.0, "ack_delay": 0.2}, "push": push},
    }


@pytest.fixture(scope="module")
def srv(backend: str, ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp(f"push-{backend}"), backend, ca,
                            config=config(include_sender=True, include_body=True,
                                          timeout=1.5, max_failures=2))


# -- the app server ---------------------------------------------------------------------------
@dataclass
class Publish:
    frm: str
    node: str
    summary: dict[str, str]
    options: dict[str, str] | None


def fields(x: ET.Element) -> dict[str, str]:
    return {f.get("var", ""): f.findtext(f"{{{XD}}}value") or "" for f in x.findall(
        f"{{{XD}}}field")}


@dataclass
class AppServer:
    """Answers disco#info as a pubsub/push service (XEP-0357 §4.2) and each publish with a
    result, or with what ``answers`` says for its node: ('error', type, condition) or
    'silent' (no answer at all)."""

    comp: RawComponent
    got: asyncio.Queue[Publish] = field(default_factory=asyncio.Queue)
    answers: dict[str, object] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, srv: ServerProcess) -> AppServer:
        app = cls(await RawComponent.connect(srv.ports["component"][0], PUSH, SECRET))
        app.task = asyncio.ensure_future(app._serve())
        return app

    async def _serve(self) -> None:
        while True:
            iq = await self.comp.read(timeout=3600)
            if iq.tag != A + "iq" or iq.get("type") not in ("get", "set"):
                continue
            head = f"<iq type='result' id='{iq.get('id')}' to='{iq.get('from')}' from='{PUSH}'"
            if iq.find(f"{{{DISCO}}}query") is not None:
                await self.comp.send(f"{head}><query xmlns='{DISCO}'><identity category="
                                     f"'pubsub' type='push'/><feature var='{NS_PUSH}'/>"
                                     "</query></iq>")
                continue
            pub = iq.find(f"{{{PS}}}pubsub/{{{PS}}}publish")
            assert pub is not None, ET.tostring(iq)
            x = pub.find(f"{{{PS}}}item/{{{NS_PUSH}}}notification/{{{XD}}}x")
            assert x is not None and x.get("type") == "submit", ET.tostring(iq)
            opts = iq.find(f"{{{PS}}}pubsub/{{{PS}}}publish-options/{{{XD}}}x")
            node = pub.get("node", "")
            self.got.put_nowait(Publish(iq.get("from", ""), node, fields(x),
                                        None if opts is None else fields(opts)))
            answer = self.answers.get(node, "result")
            if answer == "silent":
                continue
            if isinstance(answer, tuple):
                _, etype, cond = answer
                await self.comp.send(
                    f"<iq type='error' id='{iq.get('id')}' to='{iq.get('from')}' "
                    f"from='{PUSH}'><error type='{etype}'><{cond} xmlns='urn:ietf:params:xml:"
                    "ns:xmpp-stanzas'/></error></iq>")
            else:
                await self.comp.send(head + "/>")

    async def next(self, timeout: float = 10.0) -> Publish:
        return await asyncio.wait_for(self.got.get(), timeout)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.comp.send("</stream:stream>")
        self.comp.close()


# -- users ------------------------------------------------------------------------------------
async def login(srv: ServerProcess, jid: str, resource: str = "r", presence: bool = True,
                sm: bool = False) -> RawStream:
    raw = await RawStream.open(srv.c2s_port)
    await raw.login(str(srv.ca.ca_file), jid.split("@")[0], srv.passwords[jid],
                    resource=resource)
    if sm:
        enabled = await raw.enable_sm(resume=True)
        assert enabled.tag == q(NS_SM, "enabled"), ET.tostring(enabled)
        raw.previd = enabled.get("id")  # type: ignore[attr-defined]
    if presence:
        await raw.send("<presence/>")
        await raw.read_until(lambda e: e.tag == C + "presence")  # our own, echoed
    return raw


def enable_xml(node: str | None, jid: str = PUSH, secret: str | None = None,
               extra: str = "") -> str:
    attrs = f" jid='{jid}'" if jid else ""
    attrs += f" node='{node}'" if node is not None else ""
    form = "" if secret is None else options_form(secret)
    return f"<enable xmlns='{NS_PUSH}'{attrs}>{form}{extra}</enable>"


def options_form(secret: str) -> str:
    return (f"<x xmlns='{XD}' type='submit'><field var='FORM_TYPE'><value>{OPTIONS}</value>"
            f"</field><field var='secret'><value>{secret}</value></field></x>")


async def enable(raw: RawStream, node: str, secret: str | None = None) -> None:
    res = await raw.iq(enable_xml(node, secret=secret), "set", id_="en-" + node)
    assert res.get("type") == "result", ET.tostring(res)


async def leave(raw: RawStream) -> None:
    """Close the stream; once the server has closed TCP the session is unbound."""
    assert await raw.eof()


async def say(raw: RawStream, to: str, text: str, extra: str = "") -> None:
    body = f"<body>{text}</body>" if text else ""
    await raw.send(f"<message to='{to}' type='chat'>{body}{extra}</message>")


def stored(srv: ServerProcess, jid: str) -> list[PushRegistration]:
    db = Database(srv.storage_url, 1)
    try:
        return done(Storage(db).push.get("localhost", jid.split("@")[0]))  # type: ignore[no-any-return]
    finally:
        db.stop()


async def barrier(raw: RawStream) -> None:
    """An IQ round trip: everything the stream sent before has been processed."""
    res = await raw.iq("<ping xmlns='urn:xmpp:ping'/>", to="localhost", id_="barrier")
    assert res.get("type") == "result"


# -- tests ------------------------------------------------------------------------------------
def test_offline_message_is_pushed_with_summary_and_options(srv: ServerProcess) -> None:
    alice, bob = srv.new_user("alice")[0], srv.new_user("bob")[0]

    async def body() -> None:
        app = await AppServer.start(srv)
        a = await login(srv, alice)
        info = await a.iq(f"<query xmlns='{DISCO}'/>", to=alice)
        assert NS_PUSH in [f.get("var") for f in info.iter(f"{{{DISCO}}}feature")]  # §4.1
        await enable(a, "n1", secret="s3cr3t")
        await leave(a)
        b = await login(srv, bob, resource="desk")
        await say(b, alice, "Wherefore art thou?")
        p = await app.next()
        assert (p.frm, p.node) == ("localhost", "n1")  # from the server's JID (§7)
        assert p.summary == {"FORM_TYPE": "urn:xmpp:push:summary", "message-count": "1",
                             "last-message-sender": bob + "/desk",
                             "last-message-body": "Wherefore art thou?"}
        assert p.options == {"FORM_TYPE": OPTIONS, "secret": "s3cr3t"}
        # an empty body, a chat state, a headline: nothing worth waking a phone for
        await say(b, alice, "", "<active xmlns='http://jabber.org/protocol/chatstates'/>")
        await b.send(f"<message to='{alice}' type='chat'><body/></message>")
        await b.send(f"<message to='{alice}' type='headline'><body>news</body></message>")
        await say(b, alice, "second")
        p = await app.next()
        assert (p.summary["message-count"], p.summary["last-message-body"]) == ("2", "second")
        # an encrypted message without a body is important (OMEMO)
        await say(b, alice, "", "<encrypted xmlns='eu.siacs.conversations.axolotl'/>")
        p = await app.next()
        assert p.summary["message-count"] == "3" and "last-message-body" not in p.summary
        # §5: enabling the same JID and node again replaces the publish options
        a = await login(srv, alice, presence=False)
        await enable(a, "n1", secret="new")
        await leave(a)
        await say(b, alice, "third")
        p = await app.next()
        assert p.options == {"FORM_TYPE": OPTIONS, "secret": "new"}
        assert p.summary["message-count"] == "1"  # the device showed up in between
        assert [(r.service, r.node) for r in stored(srv, alice)] == [(PUSH, "n1")]
        await leave(b)
        await app.close()
    run(body())


def test_bad_enable_and_disable_are_refused_and_change_nothing(srv: ServerProcess) -> None:
    alice, bob = srv.new_user("alice")[0], srv.new_user("bob")[0]

    async def body() -> None:
        a = await login(srv, alice)
        form = (f"<x xmlns='{XD}' type='submit'><field var='FORM_TYPE'><value>urn:other"
                "</value></field></x>")
        cases = [
            (enable_xml(None), "bad-request"),  # no node (§12 schema: required)
            (enable_xml(""), "bad-request"),
            (enable_xml("n", jid=""), "bad-request"),  # no jid (§5 MUST)
            (enable_xml("n", jid="a@@b"), "jid-malformed"),
            (enable_xml("n", jid=alice), "bad-request"),  # the account itself
            (enable_xml("n", extra=form), "bad-request"),  # not publish-options
            (enable_xml("n", secret="x", extra=options_form("y")), "bad-request"),  # two
            (enable_xml("n" * 1024), "not-acceptable"),
            (f"<disable xmlns='{NS_PUSH}' node='n'/>", "bad-request"),  # §6: jid MUST
        ]
        for i, (payload, cond) in enumerate(cases):
            res = await a.iq(payload, "set", id_=f"bad{i}")
            assert res.get("type") == "error", (payload, ET.tostring(res))
            assert stanza_error(res)[1] == cond, (payload, ET.tostring(res))
        # another account's registrations are not anyone else's business
        b = await login(srv, bob)
        res = await b.iq(enable_xml("n"), "set", to=alice, id_="other")
        assert stanza_error(res) == ("auth", "forbidden")
        res = await b.iq(f"<disable xmlns='{NS_PUSH}' jid='{PUSH}'/>", "set", to=alice,
                         id_="other2")
        assert stanza_error(res) == ("auth", "forbidden")
        # nor the business of a component, even the app server itself
        comp = await RawComponent.connect(srv.ports["component"][0], PUSH, SECRET)
        await comp.send(f"<iq type='set' id='c1' from='{PUSH}' to='{alice}'>"
                        f"{enable_xml('n')}</iq>")
        res = await comp.read_until(lambda e: e.tag == A + "iq" and e.get("id") == "c1")
        assert res.get("type") == "error" and res.find(
            f"{A}error/{{urn:ietf:params:xml:ns:xmpp-stanzas}}forbidden") is not None
        await comp.send("</stream:stream>")
        comp.close()
        assert stored(srv, alice) == []
        # before authentication there is no account to enable it for
        pre = await RawStream.open(srv.c2s_port)
        await pre.open_stream()
        await pre.send(f"<iq type='set' id='pre'>{enable_xml('n')}</iq>")
        assert await pre.stream_error() == "not-authorized"
        assert stored(srv, alice) == []
        await leave(a)
        await leave(b)
    run(body())


def test_hibernated_session_gets_pushes_until_resumed(srv: ServerProcess) -> None:
    alice, bob = srv.new_user("alice")[0], srv.new_user("bob")[0]

    async def body() -> None:
        app = await AppServer.start(srv)
        b = await login(srv, bob)
        a = await login(srv, alice, sm=True)
        await enable(a, "phone")
        await say(b, alice, "m1")
        got = await a.read_until(lambda e: e.tag == C + "message")
        assert got.findtext(C + "body") == "m1"
        a.kill()  # read but never acknowledged: the TCP connection is simply gone
        p = await app.next()  # XEP-0198 hibernation started with m1 unacknowledged
        assert (p.node, p.summary["last-message-body"], p.summary["message-count"]) == (
            "phone", "m1", "1")
        await say(b, alice, "m2")  # queued for the hibernating session
        p = await app.next()
        assert (p.summary["last-message-body"], p.summary["message-count"]) == ("m2", "2")
        new = await RawStream.open(srv.c2s_port)
        await new.authenticate(str(srv.ca.ca_file), alice.split("@")[0],
                               srv.passwords[alice])
        await new.send(f"<resume xmlns='{NS_SM}' previd='{a.previd}' h='{a.h}'/>")  # type: ignore[attr-defined]
        resumed = await new.read()
        assert resumed.tag == q(NS_SM, "resumed"), ET.tostring(resumed)
        new.sm_enabled, new.h = True, a.h
        # m1 was read before the drop (h counts it); m2 is sent again
        assert (await new.read_until(lambda e: e.tag == C + "message")).findtext(
            C + "body") == "m2"
        await say(b, alice, "m3")  # awake again: delivered, not pushed
        assert (await new.read_until(lambda e: e.findtext(C + "body") == "m3")) is not None
        await new.send("<inactive xmlns='urn:xmpp:csi:0'/>")
        await barrier(new)
        await say(b, alice, "m4")
        p = await app.next()
        # the next push is m4's, counted from the resumption: m3 was never pushed
        assert (p.summary["last-message-body"], p.summary["message-count"]) == ("m4", "1")
        await new.ack()
        await leave(new)
        await leave(b)
        await app.close()
    run(body())


def test_inactive_client_is_pushed_and_active_one_is_not(srv: ServerProcess) -> None:
    alice, bob = srv.new_user("alice")[0], srv.new_user("bob")[0]

    async def body() -> None:
        app = await AppServer.start(srv)
        b = await login(srv, bob)
        a = await login(srv, alice)
        await enable(a, "csi")
        await a.send("<inactive xmlns='urn:xmpp:csi:0'/>")
        await barrier(a)
        await say(b, alice, "c1")
        got = await a.read_until(lambda e: e.tag == C + "message")
        assert got.findtext(C + "body") == "c1"  # XEP-0352 never holds messages back
        p = await app.next()
        assert (p.node, p.summary["last-message-body"]) == ("csi", "c1")
        await a.send("<active xmlns='urn:xmpp:csi:0'/>")
        await barrier(a)
        await say(b, alice, "c2")
        assert (await a.read_until(lambda e: e.tag == C + "message")).findtext(
            C + "body") == "c2"
        await a.send("<inactive xmlns='urn:xmpp:csi:0'/>")
        await barrier(a)
        await say(b, alice, "c3")
        p = await app.next()
        assert (p.summary["last-message-body"], p.summary["message-count"]) == ("c3", "1")
        await leave(a)
        await leave(b)
        await app.close()
    run(body())


def test_two_devices_disable_by_node_and_by_service(srv: ServerProcess) -> None:
    alice, bob = srv.new_user("alice")[0], srv.new_user("bob")[0]

    async def body() -> None:
        app = await AppServer.start(srv)
        b = await login(srv, bob)
        for device in ("d1", "d2"):
            a = await login(srv, alice, resource=device)
            await enable(a, device)
            await leave(a)
        await say(b, alice, "to both")
        assert sorted([(await app.next()).node, (await app.next()).node]) == ["d1", "d2"]
        # d2's owner is online on a desktop: d1's phone has no session and still hears of
        # what the archive got (it will fetch it from there)
        desk = await login(srv, alice, resource="desk")
        await say(b, alice, "while at the desk")
        await desk.read_until(lambda e: e.findtext(C + "body") == "while at the desk")
        got = sorted([(await app.next()).node, (await app.next()).node])
        assert got == ["d1", "d2"]
        res = await desk.iq(f"<disable xmlns='{NS_PUSH}' jid='{PUSH}' node='d1'/>", "set",
                            id_="dis1")
        assert res.get("type") == "result"
        assert [r.node for r in stored(srv, alice)] == ["d2"]
        await leave(desk)
        await say(b, alice, "only d2")
        p = await app.next()
        assert (p.node, p.summary["last-message-body"]) == ("d2", "only d2")
        a = await login(srv, alice, resource="d1", presence=False)
        await enable(a, "d3")
        res = await a.iq(f"<disable xmlns='{NS_PUSH}' jid='{PUSH}'/>", "set", id_="dis2")
        assert res.get("type") == "result"  # §6: no node: every node of the service
        assert stored(srv, alice) == []
        await leave(a)
        await say(b, alice, "nobody")
        a = await login(srv, alice, resource="d1", presence=False)
        await enable(a, "d4")
        await leave(a)
        await say(b, alice, "d4")
        # Nothing went to d2 or d3 since. "nobody" is committed behind the sender's stream
        # and may be reported after d4 registered (it waits offline: d4 may hear of it).
        p = await app.next()
        if p.summary["last-message-body"] == "nobody":
            assert p.node == "d4"
            p = await app.next()
        assert (p.node, p.summary["last-message-body"]) == ("d4", "d4")
        await leave(b)
        await app.close()
    run(body())


def test_app_server_errors_disable_the_registration(srv: ServerProcess) -> None:
    alice, bob = srv.new_user("alice")[0], srv.new_user("bob")[0]

    async def body() -> None:
        app = await AppServer.start(srv)
        app.answers = {"gone": ("error", "cancel", "item-not-found"),
                       "busy": ("error", "wait", "resource-constraint"),
                       "dead": "silent"}
        b = await login(srv, bob)
        a = await login(srv, alice, presence=False)
        for node in ("gone", "busy", "dead", "ok"):
            await enable(a, node)
        await leave(a)
        await say(b, alice, "one")
        assert sorted([(await app.next()).node for _ in range(4)]) == [
            "busy", "dead", "gone", "ok"]
        # §7.1: an error disables the registration; 'wait' and no answer are transient
        await wait_for(lambda: sorted(r.node for r in stored(srv, alice)) == [
            "busy", "dead", "ok"])
        await say(b, alice, "two")  # the second in a row (max_failures = 2)
        assert sorted([(await app.next()).node for _ in range(3)]) == ["busy", "dead", "ok"]
        await wait_for(lambda: [r.node for r in stored(srv, alice)] == ["ok"], timeout=15)
        await say(b, alice, "three")
        p = await app.next()
        assert (p.node, p.summary["message-count"]) == ("ok", "3")
        with pytest.raises(asyncio.TimeoutError):
            await app.next(timeout=2.0)  # and nobody else
        await leave(b)
        await app.close()
    run(body(), timeout=90)


def test_defaults_keep_sender_and_body_private_and_registrations_survive_restart(
        ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> None:
    gen = start_server(tmp_path_factory.mktemp("push-restart"), "sqlite", ca,
                       config=config(inactive=False, max_failures=1))
    srv = next(gen)
    alice, bob = srv.new_user("alice")[0], srv.new_user("bob")[0]

    async def before() -> None:
        a = await login(srv, alice)
        await enable(a, "n", secret="kept")
        b = await login(srv, bob)
        # inactive = false: a connected client is not pushed, whatever it says. (Were it,
        # the publish would go to an app server that is not connected, the error would
        # disable the registration (max_failures = 1), and nothing would be pushed after
        # the restart.)
        await a.send("<inactive xmlns='urn:xmpp:csi:0'/>")
        await barrier(a)
        await say(b, alice, "awake")
        await a.read_until(lambda e: e.findtext(C + "body") == "awake")
        await leave(a)
        await leave(b)

    async def after() -> None:
        app = await AppServer.start(srv)
        b = await login(srv, bob)
        await say(b, alice, "private")
        p = await app.next()
        assert p.summary == {"FORM_TYPE": "urn:xmpp:push:summary", "message-count": "1"}
        assert p.options == {"FORM_TYPE": OPTIONS, "secret": "kept"}
        await leave(b)
        await app.close()

    try:
        run(before())
        srv.restart()
        run(after())
    finally:
        gen.close()
