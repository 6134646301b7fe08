"""XEP-0133 administration over XEP-0050 ad-hoc commands, driven by slixmpp's xep_0050 client
against the running server: every command, multi-stage cancel, errors, non-admins."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from slixmpp.exceptions import IqError

from tests.conftest import start_server
from tests.support import adhoc
from tests.support.adhoc import NS_COMMANDS, PLUGINS, error, form_fields, notes, send, values
from tests.support.ca import CertAuthority
from tests.support.client import Client, connect, run, wait_for
from tests.support.raw import NS_SASL, RawStream, q
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

BOSS = "boss@localhost"
XEP0133_NODES = [
    "add-user", "delete-user", "disable-user", "reenable-user", "end-user-session",
    "change-user-password", "get-user-roster", "get-user-lastlogin", "user-stats",
    "get-registered-users-num", "get-disabled-users-num", "get-online-users-num",
    "get-active-users-num", "get-idle-users-num", "get-registered-users-list",
    "get-disabled-users-list", "get-online-users-list", "get-active-users", "get-idle-users",
    "announce", "set-motd", "edit-motd", "delete-motd", "set-welcome", "delete-welcome",
    "edit-admin", "restart", "shutdown"]


@pytest.fixture(scope="module")
def srv(backend: str, ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp(f"admin-{backend}"), backend, ca,
                            config={"hosts": {"localhost": {"admins": [BOSS]}}})


@pytest.fixture(scope="module")
def boss(srv: ServerProcess) -> str:
    srv.add_user(BOSS)
    return BOSS


async def admin(srv: ServerProcess, jid: str = BOSS + "/console") -> Client:
    return await connect(srv, jid, plugins=PLUGINS)


async def login_outcome(srv: ServerProcess, jid: str, password: str) -> str:
    """'success' or the SASL failure condition of a PLAIN login."""
    raw = await RawStream.open(srv.c2s_port)
    try:
        await raw.open_stream()
        await raw.starttls(str(srv.ca.ca_file))
        await raw.open_stream()
        el = await raw.auth_plain(jid.split("@")[0], password)
        if el.tag == q(NS_SASL, "success"):
            return "success"
        return next(c.tag.split("}")[1] for c in el if not c.tag.endswith("}text"))
    finally:
        raw.close()


def test_commands_are_discoverable_by_admins_only(srv: ServerProcess, boss: str) -> None:
    user, _ = srv.new_user("plain")

    async def body() -> None:
        a = await admin(srv)
        info = await a.plugin["xep_0030"].get_info(jid="localhost")
        assert NS_COMMANDS in info["disco_info"]["features"]
        items = await a.plugin["xep_0050"].get_commands("localhost")
        nodes = {i[1] for i in items["disco_items"]["items"]}
        assert {adhoc.node(n) for n in XEP0133_NODES} <= nodes
        assert all(i[0] == "localhost" and i[2] for i in items["disco_items"]["items"])
        listing = await a.plugin["xep_0030"].get_info(jid="localhost", node=NS_COMMANDS)
        assert ("automation", "command-list") in {
            (i[0], i[1]) for i in listing["disco_info"]["identities"]}
        cmd = await a.plugin["xep_0030"].get_info(jid="localhost", node=adhoc.node("add-user"))
        assert ("automation", "command-node") in {
            (i[0], i[1]) for i in cmd["disco_info"]["identities"]}
        assert {NS_COMMANDS, "jabber:x:data"} <= set(cmd["disco_info"]["features"])

        u = await connect(srv, user, plugins=PLUGINS)
        items = await u.plugin["xep_0050"].get_commands("localhost")
        assert not items["disco_items"]["items"]
        with pytest.raises(IqError) as exc:
            await u.plugin["xep_0030"].get_info(jid="localhost", node=adhoc.node("add-user"))
        assert error(exc.value)[0] == "forbidden"
        for name in ("add-user", "get-registered-users-num", "shutdown"):
            with pytest.raises(IqError) as exc:
                await send(u, name)
            assert error(exc.value) == ("forbidden", None)
        with pytest.raises(IqError) as exc:
            await send(u, "delete-user", "complete", None, {"accountjids": boss})
        assert error(exc.value)[0] == "forbidden"
        await u.close()
        await a.close()

    run(body())
    assert srv.cli("users").stdout.split().count(boss) == 1


def test_add_user_form_and_errors(srv: ServerProcess, boss: str) -> None:
    async def body() -> None:
        a = await admin(srv)
        first = await send(a, "add-user")
        cmd = first["command"]
        assert cmd["status"] == "executing" and cmd["sessionid"]
        assert first.xml.find(f"{{{NS_COMMANDS}}}command/{{{NS_COMMANDS}}}actions") is not None
        fields = form_fields(first)
        assert fields["FORM_TYPE"].findtext("{jabber:x:data}value") == adhoc.NS_ADMIN
        assert fields["accountjid"].get("type") == "jid-single"
        assert fields["accountjid"].find("{jabber:x:data}required") is not None
        assert fields["password"].get("type") == "text-private"
        assert {"password-verify", "email", "given_name", "surname"} <= set(fields)
        sid = cmd["sessionid"]
        # A mismatched repetition is refused, nothing is created, the session stays open.
        with pytest.raises(IqError) as exc:
            await send(a, "add-user", "complete", sid, {
                "accountjid": "newbie@localhost", "password": "s3cret",
                "password-verify": "other"})
        assert error(exc.value) == ("bad-request", "bad-payload")
        assert "password-verify" in exc.value.text
        for bad in ("not a jid@@", "nobody@other.example", "localhost", "a@localhost/res"):
            with pytest.raises(IqError) as exc:
                await send(a, "add-user", "complete", sid,
                           {"accountjid": bad, "password": "s3cret"})
            assert error(exc.value) == ("bad-request", "bad-payload"), bad
        done = await send(a, "add-user", "complete", sid, {
            "accountjid": "Newbie@localhost", "password": "s3cret",
            "password-verify": "s3cret", "email": "n@example.org"})
        assert done["command"]["status"] == "completed"
        assert ("info", "created newbie@localhost") in notes(done)
        with pytest.raises(IqError) as exc:  # completed: the session is over
            await send(a, "add-user", "complete", sid, {"accountjid": "x@localhost"})
        assert error(exc.value) == ("not-allowed", "session-expired")
        with pytest.raises(IqError) as exc:  # XEP-0133 §5: conflict for an existing user
            await adhoc.run(a, "add-user", {"accountjid": "newbie@localhost",
                                            "password": "other"})
        assert error(exc.value)[0] == "conflict"
        await a.close()

    run(body())
    assert run(login_outcome(srv, "newbie@localhost", "s3cret")) == "success"
    assert "not a jid@@" not in srv.cli("users").stdout


def test_delete_user_ends_sessions_and_a_bad_jid_deletes_nothing(srv: ServerProcess,
                                                                  boss: str) -> None:
    victim, pw = srv.new_user("victim")
    other, _ = srv.new_user("other")

    async def body() -> None:
        a = await admin(srv)
        v = await connect(srv, victim + "/phone")
        with pytest.raises(IqError) as exc:
            await adhoc.run(a, "delete-user", {"accountjids": [victim, "ghost@localhost"]})
        assert error(exc.value) == ("bad-request", "bad-payload")
        assert "no such user ghost@localhost" in exc.value.text
        with pytest.raises(IqError) as exc:
            await adhoc.run(a, "delete-user", {"accountjids": [other, "bad@@jid"]})
        assert error(exc.value) == ("bad-request", "bad-payload")
        assert v.is_connected()
        done = await adhoc.run(a, "delete-user", {"accountjids": [victim]})
        assert done["command"]["status"] == "completed"
        reason = await asyncio.wait_for(v.gone, 10)
        assert "not-authorized" in v.stream_errors, (reason, v.stream_errors)
        await a.close()

    run(body())
    users = srv.cli("users").stdout.split()
    assert victim not in users and other in users
    assert run(login_outcome(srv, victim, pw)) == "not-authorized"


def test_disable_ends_sessions_refuses_login_and_reenable_restores(srv: ServerProcess,
                                                                   boss: str) -> None:
    user, pw = srv.new_user("dis")

    async def body() -> None:
        a = await admin(srv)
        u = await connect(srv, user + "/laptop")
        form = await send(a, "disable-user")
        assert form_fields(form)["accountjids"].get("type") == "jid-multi"
        done = await send(a, "disable-user", "complete", form["command"]["sessionid"],
                          {"accountjids": [user]})
        assert done["command"]["status"] == "completed"
        await asyncio.wait_for(u.gone, 10)
        assert "not-authorized" in u.stream_errors
        # RFC 6120 §6.5.1 once the password is right; a wrong one tells nothing.
        assert await login_outcome(srv, user, pw) == "account-disabled"
        assert await login_outcome(srv, user, "wrong") == "not-authorized"
        n = values(await adhoc.run(a, "get-disabled-users-num"))["disabledusersnum"]
        assert int(n) >= 1
        listed = values(await adhoc.run(a, "get-disabled-users-list", {"max_items": "none"}))
        assert user in listed["disableduserjids"]
        await adhoc.run(a, "reenable-user", {"accountjids": [user]})
        assert await login_outcome(srv, user, pw) == "success"
        listed = values(await adhoc.run(a, "get-disabled-users-list", {"max_items": "25"}))
        assert user not in listed.get("disableduserjids", [])
        await a.close()

    run(body())


def test_end_user_session_by_full_and_bare_jid_and_no_resumption(srv: ServerProcess,
                                                                 boss: str) -> None:
    user, pw = srv.new_user("kick")
    local = user.split("@")[0]

    async def body() -> None:
        a = await admin(srv)
        raw = await RawStream.open(srv.c2s_port)
        full = await raw.login(str(srv.ca.ca_file), local, pw, resource="r1")
        enabled = await raw.enable_sm(resume=True)
        previd = enabled.get("id")
        other = await connect(srv, user + "/r2")
        done = await adhoc.run(a, "end-user-session", {"accountjids": [full]})
        assert done["command"]["status"] == "completed"
        assert await raw.stream_error() == "policy-violation"
        raw.close()
        await other.plugin["xep_0199"].ping("localhost")  # the other resource is untouched
        # The kicked session was ended, not kept for XEP-0198 resumption.
        again = await RawStream.open(srv.c2s_port)
        await again.authenticate(str(srv.ca.ca_file), local, pw)
        await again.send(f"<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>")
        answer = await again.read()
        assert answer.tag == "{urn:xmpp:sm:3}failed", ET.tostring(answer)
        again.close()
        await adhoc.run(a, "end-user-session", {"accountjids": [user]})
        await asyncio.wait_for(other.gone, 10)
        assert "policy-violation" in other.stream_errors
        none = await adhoc.run(a, "end-user-session", {"accountjids": [user]})
        assert any("ended 0 sessions" in text for _kind, text in notes(none))
        await a.close()

    run(body())
    assert run(login_outcome(srv, user, pw)) == "success"  # kicked, not banned


def test_change_password_roster_lastlogin_and_stats(srv: ServerProcess, boss: str) -> None:
    user, pw = srv.new_user("acct")
    friend, _ = srv.new_user("friend")

    async def body() -> None:
        a = await admin(srv)
        u = await connect(srv, user + "/desk")
        await u.get_roster()
        await u.update_roster(friend, name="Pal", groups=["Friends", "Work"])
        roster = await adhoc.run(a, "get-user-roster", {"accountjids": [user]})
        x = roster.xml.find(f"{{{NS_COMMANDS}}}command/{{jabber:x:data}}x")
        assert x is not None and x.get("type") == "result"
        item = x.find("{jabber:iq:roster}query/{jabber:iq:roster}item")
        assert item is not None and item.get("jid") == friend and item.get("name") == "Pal"
        assert sorted(g.text or "" for g in item.findall("{jabber:iq:roster}group")) == [
            "Friends", "Work"]
        assert values(roster)["accountjids"] == [user]

        last = values(await adhoc.run(a, "get-user-lastlogin", {"accountjids": [user]}))
        assert last["accountjids"] == [user] and last["lastlogin"].endswith("Z")
        never = values(await adhoc.run(a, "get-user-lastlogin", {"accountjids": [friend]}))
        assert never["lastlogin"] == ""

        stats = values(await adhoc.run(a, "user-stats", {"accountjid": user}))
        assert stats["rostersize"] == "1"
        assert stats["onlineresources"] == ["desk"]
        assert stats["ipaddresses"] == ["127.0.0.1"]

        form = await send(a, "change-user-password")
        fields = form_fields(form)
        assert fields["password"].find("{jabber:x:data}required") is not None
        with pytest.raises(IqError) as exc:
            await send(a, "change-user-password", "complete", form["command"]["sessionid"],
                       {"accountjid": "ghost@localhost", "password": "x"})
        assert error(exc.value) == ("bad-request", "bad-payload")
        await send(a, "change-user-password", "complete", form["command"]["sessionid"],
                   {"accountjid": user, "password": "n3w-pass"})
        await u.close()
        await a.close()

    run(body())
    assert run(login_outcome(srv, user, "n3w-pass")) == "success"
    assert run(login_outcome(srv, user, pw)) == "not-authorized"


def test_counts_and_lists_of_users(srv: ServerProcess, boss: str) -> None:
    active_user, _ = srv.new_user("act")
    idle_user, _ = srv.new_user("idl")
    silent_user, _ = srv.new_user("sil")

    async def body() -> None:
        a = await admin(srv)
        act = await connect(srv, active_user)
        idl = await connect(srv, idle_user, presence=False)
        idl.send_presence(pshow="away")
        sil = await connect(srv, silent_user, presence=False)  # bound, never available

        async def idle_listed() -> bool:
            got = values(await adhoc.run(a, "get-idle-users", {"max_items": "none"}))
            return idle_user in got.get("activeuserjids", [])

        await wait_for(idle_listed)
        registered = values(await adhoc.run(a, "get-registered-users-num"))
        assert int(registered["registeredusersnum"]) >= 4
        everyone = values(await adhoc.run(a, "get-registered-users-list", {"max_items": "none"}))
        assert {active_user, idle_user, silent_user, BOSS} <= set(everyone["registereduserjids"])
        few = await adhoc.run(a, "get-registered-users-list", {"max_items": "25"})
        assert len(values(few)["registereduserjids"]) <= 25
        online = values(await adhoc.run(a, "get-online-users-list", {"max_items": "none"}))
        assert {active_user, idle_user, silent_user, BOSS} <= set(online["onlineuserjids"])
        active = values(await adhoc.run(a, "get-active-users", {"max_items": "100"}))
        assert active_user in active["activeuserjids"] and BOSS in active["activeuserjids"]
        assert idle_user not in active["activeuserjids"]
        idle = values(await adhoc.run(a, "get-idle-users-list", {"max_items": "100"}))
        assert {idle_user, silent_user} <= set(idle["activeuserjids"])
        counts = {n: int(values(await adhoc.run(a, f"get-{n}-users-num"))[f"{n}usersnum"])
                  for n in ("online", "active", "idle")}
        assert counts["online"] == counts["active"] + counts["idle"] >= 4
        with pytest.raises(IqError) as exc:
            await adhoc.run(a, "get-online-users-list", {"max_items": "7"})
        assert error(exc.value) == ("bad-request", "bad-payload")
        for c in (act, idl, sil, a):
            await c.close()

    run(body())


def test_announce_motd_and_welcome(srv: ServerProcess, boss: str) -> None:
    online, _ = srv.new_user("on")
    later, _ = srv.new_user("later")

    def from_server(m: object) -> bool:
        return str(m["from"]) == "localhost"  # type: ignore[index]

    async def body() -> None:
        a = await admin(srv)
        o = await connect(srv, online + "/one")
        await adhoc.run(a, "announce", {"announcement": ["Going down", "at noon"]})
        msg = await o.next_message(where=from_server)
        assert msg["type"] == "headline" and msg["body"] == "Going down\nat noon"

        done = await adhoc.run(a, "set-motd", {"motd": "Welcome back"})
        assert done["command"]["status"] == "completed"
        msg = await o.next_message(where=from_server)  # online when it was set: at once
        assert msg["body"] == "Welcome back" and msg["subject"] == "Message of the day"
        edit = await send(a, "edit-motd")
        prefilled = form_fields(edit)["motd"]
        assert [v.text for v in prefilled.findall("{jabber:x:data}value")] == ["Welcome back"]
        await send(a, "edit-motd", "complete", edit["command"]["sessionid"],
                   {"motd": "Welcome back!"})
        msg = await o.next_message(where=from_server)  # an edit is a new text
        assert msg["body"] == "Welcome back!", (str(msg), [str(m) for m in o.messages._queue])

        first = await connect(srv, later + "/a")  # logs in later: gets it once
        msg = await first.next_message(where=from_server)
        assert msg["body"] == "Welcome back!"
        await first.close()
        second = await connect(srv, later + "/b")
        await second.plugin["xep_0199"].ping("localhost")  # a barrier: the login is done
        await adhoc.run(a, "delete-motd")
        await second.plugin["xep_0199"].ping("localhost")
        assert second.messages.empty()
        await second.close()
        gone = await adhoc.run(a, "delete-motd")
        assert ("info", "there was no message of the day") in notes(gone)

        await adhoc.run(a, "set-welcome", {"welcome": ["Hello,", "newcomer"]})
        shown = form_fields(await send(a, "set-welcome"))["welcome"]
        assert [v.text for v in shown.findall("{jabber:x:data}value")] == ["Hello,", "newcomer"]
        await adhoc.run(a, "add-user", {"accountjid": "fresh@localhost", "password": "pw-1"})
        await o.close()
        await a.close()

    run(body())
    srv.passwords["fresh@localhost"] = "pw-1"

    async def newcomer() -> None:
        f = await connect(srv, "fresh@localhost/x")
        msg = await f.next_message(where=from_server)
        assert msg["body"] == "Hello,\nnewcomer" and msg["subject"] == "Welcome"
        await f.close()
        a = await admin(srv)
        await adhoc.run(a, "delete-welcome")
        await adhoc.run(a, "add-user", {"accountjid": "fresher@localhost", "password": "pw-2"})
        await a.close()

    run(newcomer())
    srv.passwords["fresher@localhost"] = "pw-2"

    async def no_welcome() -> None:
        f = await connect(srv, "fresher@localhost/x")
        await f.plugin["xep_0199"].ping("localhost")
        assert f.messages.empty()
        await f.close()

    run(no_welcome())


def test_edit_admin_list(srv: ServerProcess, boss: str) -> None:
    deputy, _ = srv.new_user("deputy")

    async def body() -> None:
        a = await admin(srv)
        form = await send(a, "edit-admin")
        field = form_fields(form)["adminjids"]
        assert field.get("type") == "jid-multi"
        assert [v.text for v in field.findall("{jabber:x:data}value")] == [BOSS]
        sid = form["command"]["sessionid"]
        with pytest.raises(IqError) as exc:  # the configured admin stays
            await send(a, "edit-admin", "complete", sid, {"adminjids": [deputy]})
        assert error(exc.value) == ("bad-request", "bad-payload")
        assert "configuration" in exc.value.text
        await send(a, "edit-admin", "complete", sid, {"adminjids": [BOSS, deputy]})
        d = await admin(srv, deputy + "/x")
        count = await adhoc.run(d, "get-registered-users-num")
        assert count["command"]["status"] == "completed"
        await adhoc.run(a, "edit-admin", {"adminjids": [BOSS]})
        with pytest.raises(IqError) as exc:
            await adhoc.run(d, "get-registered-users-num")
        assert error(exc.value)[0] == "forbidden"
        await d.close()
        await a.close()

    run(body())
    assert deputy not in srv.cli("admins").stdout


def test_multi_stage_cancel_and_protocol_errors(srv: ServerProcess, boss: str) -> None:
    async def body() -> None:
        a = await admin(srv)
        b = await admin(srv, BOSS + "/other")
        first = await send(a, "delete-user")
        sid = first["command"]["sessionid"]
        actions = first.xml.find(f"{{{NS_COMMANDS}}}command/{{{NS_COMMANDS}}}actions")
        assert actions is not None and actions.get("execute") == "complete"
        assert [c.tag.split("}")[1] for c in actions] == ["complete"]
        for action, condition in (("prev", "bad-action"), ("next", "bad-action"),
                                  ("frobnicate", "malformed-action")):
            with pytest.raises(IqError) as exc:
                await send(a, "delete-user", action, sid)
            assert error(exc.value) == ("bad-request", condition), action
        with pytest.raises(IqError) as exc:  # no form with it
            await send(a, "delete-user", "complete", sid)
        assert error(exc.value) == ("bad-request", "bad-payload")
        with pytest.raises(IqError) as exc:  # a session is its requester's
            await send(b, "delete-user", "complete", sid, {"accountjids": [BOSS]})
        assert error(exc.value) == ("bad-request", "bad-sessionid")
        with pytest.raises(IqError) as exc:  # ... and its command's
            await send(a, "disable-user", "complete", sid, {"accountjids": [BOSS]})
        assert error(exc.value) == ("bad-request", "bad-sessionid")
        with pytest.raises(IqError) as exc:
            await send(a, "delete-user", "complete", "no-such-session", {"accountjids": [BOSS]})
        assert error(exc.value) == ("bad-request", "bad-sessionid")
        canceled = await send(a, "delete-user", "cancel", sid)
        assert canceled["command"]["status"] == "canceled"
        with pytest.raises(IqError) as exc:
            await send(a, "delete-user", "complete", sid, {"accountjids": [BOSS]})
        assert error(exc.value) == ("not-allowed", "session-expired")
        with pytest.raises(IqError) as exc:
            await send(a, "no-such-command")
        assert error(exc.value)[0] == "item-not-found"
        with pytest.raises(IqError) as exc:  # XEP-0133 §5: defined, not supported
            await send(a, "get-user-password")
        assert error(exc.value)[0] == "feature-not-implemented"
        iq = a.make_iq_set(ito="localhost")
        cmd = ET.SubElement(iq.xml, f"{{{NS_COMMANDS}}}command",
                            node=adhoc.node("get-registered-users-num"))
        cmd.set("{http://www.w3.org/XML/1998/namespace}lang", "fr")
        with pytest.raises(IqError) as exc:
            await iq.send()
        assert error(exc.value) == ("bad-request", "bad-locale")
        await b.close()
        await a.close()

    run(body())
    assert BOSS in srv.cli("users").stdout.split()  # nothing was deleted


def test_xmppd_commands_sessions_stats_bans_reload(srv: ServerProcess, boss: str) -> None:
    async def body() -> None:
        a = await admin(srv)
        ns = "urn:xmppd:admin"
        got = await adhoc.run(a, f"{ns}#sessions")
        x = got.xml.find(f"{{{NS_COMMANDS}}}command/{{jabber:x:data}}x")
        assert x is not None and x.find("{jabber:x:data}reported") is not None
        jids = [f.findtext("{jabber:x:data}value") for f in x.iter("{jabber:x:data}field")
                if f.get("var") == "jid"]
        assert BOSS + "/console" in jids
        stats = values(await adhoc.run(a, f"{ns}#stats"))
        assert int(stats["onlineusersnum"]) >= 1 and stats["version"]
        assert (await adhoc.run(a, f"{ns}#bans"))["command"]["status"] == "completed"
        with pytest.raises(IqError) as exc:
            await adhoc.run(a, f"{ns}#unban", {"key": "192.0.2.1"}, form_type=ns)
        assert error(exc.value) == ("bad-request", "bad-payload")
        reloaded = values(await adhoc.run(a, f"{ns}#reload"))
        assert "certificates" in reloaded["reloaded"]
        await a.close()

    run(body())
