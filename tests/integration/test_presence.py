"""Rosters, subscriptions and presence with real clients (RFC 6121), 2-3 users, resources."""

from __future__ import annotations

import pytest
from slixmpp.exceptions import IqError

from tests.support.barrier import barrier, drain
from tests.support.client import Client, connect, pushed, run
from tests.support.raw import RawStream, stanza_error
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


def roster_items(c: Client) -> dict[str, dict[str, object]]:
    return {str(j): dict(c.client_roster[j]) for j in c.client_roster}


async def befriend(a: Client, b: Client) -> None:
    """a subscribes to b and b approves; then the reverse (mutual 'both')."""
    await a.get_roster()
    await b.get_roster()
    for x, y in ((a, b), (b, a)):
        x.send_presence(pto=y.boundjid.bare, ptype="subscribe")
        await y.next_presence(where=lambda p, x=x: p["type"] == "subscribe"
                              and p["from"].bare == x.boundjid.bare)
        y.send_presence(pto=x.boundjid.bare, ptype="subscribed")
        await pushed(x, y.boundjid.bare, "to" if x is a and y is b else "both")


def test_subscription_and_presence_between_three_users(server: ServerProcess) -> None:
    (a, _), (b, _), (c, _) = server.new_user("a"), server.new_user("b"), server.new_user("c")

    async def body() -> None:
        ca = await connect(server, a + "/desk")
        cb = await connect(server, b + "/desk")
        cc = await connect(server, c + "/desk")
        for x in (ca, cb, cc):
            await x.get_roster()
        # a asks b; b sees the request with a's bare JID as 'from' (RFC 6121 §3.1.2)
        ca.send_presence(pto=b, ptype="subscribe", pstatus="hi, it's a")
        req = await cb.next_presence(where=lambda p: p["type"] == "subscribe")
        assert str(req["from"]) == a and req["status"] == "hi, it's a"
        await pushed(ca, b, "none")
        assert ca.client_roster[b]["pending_out"]
        cb.send_presence(pto=a, ptype="subscribed")
        await pushed(ca, b, "to")
        await pushed(cb, a, "from")
        # b's current presence arrives right after the approval (§3.1.5)
        p = await ca.next_presence(where=lambda p: p["from"] == cb.boundjid and
                                   p["type"] == "available")
        assert p["from"] == cb.boundjid
        # b changes status: a (subscribed) sees it, c (not subscribed) does not
        cb.send_presence(pshow="away", pstatus="lunch")
        p = await ca.next_presence(where=lambda p: p["from"] == cb.boundjid and
                                   p["show"] == "away")
        assert p["status"] == "lunch"
        await barrier(cb, cc)
        assert not [p for p in drain(cc.presences) if p["from"].bare == b]
        # second resource of b: a sees both; b/phone gets b/desk's presence
        cb2 = await connect(server, b + "/phone")
        p = await ca.next_presence(where=lambda p: p["from"] == cb2.boundjid)
        assert p["type"] == "available"
        await cb2.next_presence(where=lambda p: p["from"] == cb.boundjid)
        # b/phone leaves cleanly: a sees it go, b/desk too
        await cb2.close()
        await ca.next_presence(where=lambda p: p["from"].resource == "phone"
                               and p["type"] == "unavailable")
        await cb.next_presence(where=lambda p: p["from"].resource == "phone"
                               and p["type"] == "unavailable")
        for x in (ca, cb, cc):
            await x.close()

    run(body())


def test_roster_set_remove_and_versioning(server: ServerProcess) -> None:
    (a, _), (b, _) = server.new_user("a"), server.new_user("b")

    async def body() -> None:
        ca = await connect(server, a + "/one")
        ca2 = await connect(server, a + "/two")
        await ca.get_roster()
        await ca2.get_roster()
        iq = ca.make_iq_get(queryxmlns="jabber:iq:roster")
        iq["roster"]["ver"] = ""
        res = await iq.send()
        ver = res["roster"]["ver"]
        assert ver is not None
        # unchanged -> empty result (RFC 6121 §2.6.3)
        iq = ca.make_iq_get(queryxmlns="jabber:iq:roster")
        iq["roster"]["ver"] = ver
        res = await iq.send()
        assert res.xml.find("{jabber:iq:roster}query") is None
        await ca.update_roster(b, name="Bee", groups=["Friends", "Work"])
        await pushed(ca2, b, "none")  # the other interested resource got the push
        assert ca2.client_roster[b]["name"] == "Bee"
        assert set(ca2.client_roster[b]["groups"]) == {"Friends", "Work"}
        iq = ca.make_iq_get(queryxmlns="jabber:iq:roster")
        iq["roster"]["ver"] = ver
        res = await iq.send()
        assert res["roster"]["ver"] != ver
        assert b in [str(j) for j in res["roster"]["items"]]
        await ca.del_roster_item(b)
        await barrier(ca2)  # the push was written to ca2 before ca's roster set was answered
        assert b not in ca2.client_roster or ca2.client_roster[b]["subscription"] == "remove"
        iq = ca.make_iq_set()
        q = iq.xml.makeelement("{jabber:iq:roster}query", {})
        item = q.makeelement("{jabber:iq:roster}item", {"jid": b, "subscription": "remove"})
        q.append(item)
        iq.xml.append(q)
        with pytest.raises(IqError) as exc:
            await iq.send()
        assert exc.value.condition == "item-not-found"
        await ca.close()
        await ca2.close()

    run(body())


def test_request_while_offline_is_stored_and_redelivered(server: ServerProcess) -> None:
    (a, _), (b, _) = server.new_user("a"), server.new_user("b")

    async def body() -> None:
        ca = await connect(server, a + "/x")
        ca.send_presence(pto=b, ptype="subscribe", pstatus="please")
        await barrier(ca)  # stored for b
        cb = await connect(server, b + "/x")
        req = await cb.next_presence(where=lambda p: p["type"] == "subscribe")
        assert str(req["from"]) == a and req["status"] == "please"
        await cb.close()
        # not answered yet: delivered again at the next login
        cb = await connect(server, b + "/y")
        await cb.next_presence(where=lambda p: p["type"] == "subscribe")
        cb.send_presence(pto=a, ptype="subscribed")
        await ca.next_presence(where=lambda p: p["type"] == "subscribed")
        await cb.close()
        # answered: not delivered any more
        cb = await connect(server, b + "/z")  # which ends with a barrier after presence
        assert not [p for p in drain(cb.presences) if p["type"] == "subscribe"]
        await cb.close()
        await ca.close()

    run(body())


def test_login_after_contacts_changed_while_offline(server: ServerProcess) -> None:
    (a, _), (b, _), (c, _) = server.new_user("a"), server.new_user("b"), server.new_user("c")

    async def body() -> None:
        ca = await connect(server, a + "/x")
        await ca.get_roster()
        ca.send_presence(pto=b, ptype="subscribe")
        ca.send_presence(pto=c, ptype="subscribe")
        await barrier(ca)
        await ca.close()
        # while a is offline: b approves and goes away; c approves and logs out
        cb = await connect(server, b + "/x")
        cb.send_presence(pto=a, ptype="subscribed")
        cb.send_presence(pshow="xa", pstatus="gone fishing")
        cc = await connect(server, c + "/x")
        cc.send_presence(pto=a, ptype="subscribed")
        cc.send_presence(ptype="unavailable", pstatus="bye for now")
        await barrier(cb, cc)
        await cc.close()
        # a comes back: its roster shows both approvals, probes give b's current presence
        # and c's last unavailable presence with the time it left (XEP-0203 delay)
        ca = await connect(server, a + "/y", presence=False)
        await ca.get_roster()
        assert ca.client_roster[b]["subscription"] == "to"
        assert ca.client_roster[c]["subscription"] == "to"
        ca.send_presence()
        pb = await ca.next_presence(where=lambda p: p["from"].bare == b)
        assert pb["show"] == "xa" and pb["status"] == "gone fishing"
        pc = await ca.next_presence(where=lambda p: p["from"].bare == c)
        assert pc["type"] == "unavailable" and pc["status"] == "bye for now"
        assert pc.xml.find("{urn:xmpp:delay}delay") is not None
        await ca.close()
        await cb.close()

    run(body())


def test_unavailable_on_drop_and_directed_presence(server: ServerProcess) -> None:
    (a, _), (b, _), (c, _) = server.new_user("a"), server.new_user("b"), server.new_user("c")

    async def body() -> None:
        ca = await connect(server, a + "/x")
        cb = await connect(server, b + "/x")
        cc = await connect(server, c + "/x")
        await befriend(ca, cb)
        # a sends directed presence to c (no subscription)
        ca.send_presence(pto=c + "/x", pstatus="just for you")
        await cc.next_presence(where=lambda p: p["from"] == ca.boundjid)
        # a's TCP connection dies without a closing tag
        ca.abort()
        p = await cb.next_presence(where=lambda p: p["from"] == ca.boundjid
                                   and p["type"] == "unavailable")
        assert p["type"] == "unavailable"
        await cc.next_presence(where=lambda p: p["from"] == ca.boundjid
                               and p["type"] == "unavailable")
        # kicked by a resource conflict: contacts see it go too
        ca = await connect(server, a + "/k")
        await cb.next_presence(where=lambda p: p["from"] == ca.boundjid
                               and p["type"] == "available")
        ca_new = await connect(server, a + "/k")
        await cb.next_presence(where=lambda p: p["from"] == ca.boundjid
                               and p["type"] == "unavailable")
        await cb.next_presence(where=lambda p: p["from"] == ca_new.boundjid
                               and p["type"] == "available")
        for x in (ca_new, cb, cc):
            await x.close()

    run(body())


def test_unsubscribe_and_cancel(server: ServerProcess) -> None:
    (a, _), (b, _) = server.new_user("a"), server.new_user("b")

    async def body() -> None:
        ca = await connect(server, a + "/x")
        cb = await connect(server, b + "/x")
        await ca.get_roster()
        await cb.get_roster()
        await befriend(ca, cb)
        # b cancels a's subscription: a is told and sees b go unavailable (§3.2.2)
        cb.send_presence(pto=a, ptype="unsubscribed")
        await ca.next_presence(where=lambda p: p["type"] == "unsubscribed")
        await ca.next_presence(where=lambda p: p["from"] == cb.boundjid
                               and p["type"] == "unavailable")
        await pushed(ca, b, "from")
        await pushed(cb, a, "to")
        # a unsubscribes from... nothing left in that direction; b unsubscribes from a
        cb.send_presence(pto=a, ptype="unsubscribe")
        await pushed(cb, a, "none")
        await pushed(ca, b, "none")
        await ca.close()
        await cb.close()

    run(body())


def test_roster_and_subscription_bad_input(server: ServerProcess) -> None:
    jid, pw = server.new_user("raw")
    other, _ = server.new_user("o")

    async def body() -> None:
        raw = await RawStream.open(server.c2s_port)
        await raw.login(str(server.ca.ca_file), jid.split("@")[0], pw, resource="r")
        R = "jabber:iq:roster"  # noqa: N806
        el = await raw.iq(f"<query xmlns='{R}'><item jid='x@localhost'/>"
                          f"<item jid='y@localhost'/></query>", type_="set")
        assert stanza_error(el) == ("modify", "bad-request")
        el = await raw.iq(f"<query xmlns='{R}'><item jid='x@localhost' subscription='bogus'/>"
                          "</query>", type_="set", id_="q2")
        assert stanza_error(el) == ("modify", "bad-request")
        # a defined value other than "remove" is ignored (RFC 6121 §2.1.2.5): no state change
        el = await raw.iq(f"<query xmlns='{R}'><item jid='z@localhost' subscription='both'/>"
                          "</query>", type_="set", id_="q2b")
        assert el.get("type") == "result"
        el = await raw.iq(f"<query xmlns='{R}'/>", id_="q2c")
        [z] = [i for i in el.iter(f"{{{R}}}item") if i.get("jid") == "z@localhost"]
        assert z.get("subscription") == "none"
        el = await raw.iq(f"<query xmlns='{R}'><item jid='x@localhost'><group>g</group>"
                          "<group>g</group></item></query>", type_="set", id_="q3")
        assert stanza_error(el) == ("modify", "bad-request")
        el = await raw.iq(f"<query xmlns='{R}'><item jid='@@'/></query>", type_="set",
                          id_="q4")
        assert stanza_error(el)[1] == "jid-malformed"
        el = await raw.iq(f"<query xmlns='{R}'><item jid='x@localhost' name='{'n' * 2000}'/>"
                          "</query>", type_="set", id_="q5")
        assert stanza_error(el)[1] == "not-acceptable"
        # someone else's roster: forbidden; a fake push to another user's resource: refused
        el = await raw.iq(f"<query xmlns='{R}'/>", to=other, id_="q6")
        assert stanza_error(el)[1] == "forbidden"
        el = await raw.iq(f"<query xmlns='{R}'><item jid='evil@localhost'/></query>",
                          type_="set", to=other + "/x", id_="q7")
        assert stanza_error(el)[1] == "service-unavailable"
        # subscription to self and to a malformed JID (available, so bare-JID errors reach us)
        await raw.send("<presence/>")
        await raw.read()  # our own presence, echoed (RFC 6121 §4.2.2)
        await raw.send(f"<presence to='{jid}' type='subscribe' id='s1'/>")
        el = await raw.read()
        assert el.get("type") == "error" and stanza_error(el)[1] == "bad-request"
        await raw.send("<presence to='a@b@c' type='subscribe' id='s2'/>")
        el = await raw.read()
        assert stanza_error(el)[1] == "jid-malformed"
        # a flood of subscription requests is rate limited (burst 100, then a trickle);
        # every request is answered, and the roster holds exactly the accepted ones
        await raw.send("".join(f"<presence to='flood{i}@remote.invalid' type='subscribe'/>"
                               for i in range(110)))
        conditions: list[str] = []
        while len(conditions) < 110:
            el = await raw.read(timeout=10)
            if el.tag.endswith("presence") and el.get("type") == "error":
                conditions.append(stanza_error(el)[1])
        limited = conditions.count("policy-violation")
        assert 1 <= limited <= 10  # a refill of the bucket meanwhile may let a few through
        assert conditions.count("remote-server-not-found") == 110 - limited
        el = await raw.iq(f"<query xmlns='{R}'/>", id_="q8")
        items = el.findall(f"{{{R}}}query/{{{R}}}item")
        flood = [i for i in items if i.get("jid", "").startswith("flood")]
        assert len(flood) == 110 - limited and all(i.get("ask") == "subscribe" for i in flood)
        raw.close()

    run(body())


def test_removing_a_mutual_contact_cancels_both_ways(server: ServerProcess) -> None:
    """RFC 6121 §2.5.2: removing a 'both' item sends the contact unsubscribe and unsubscribed
    and, as for an outbound unsubscribed (§3.2.2), unavailable presence from every available
    resource of the user; both rosters end in the right state."""
    (a, _), (b, _) = server.new_user("rm"), server.new_user("rm")

    async def body() -> None:
        ca = await connect(server, a + "/desk")
        cb = await connect(server, b + "/desk")
        await befriend(ca, cb)
        await cb.next_presence(
            where=lambda p: p["from"] == ca.boundjid and p["type"] == "available")
        while not cb.presences.empty():
            cb.presences.get_nowait()
        await ca.del_roster_item(b)
        got: dict[str, str] = {}
        while len(got) < 3:
            try:
                p = await cb.next_presence(where=lambda p: p["from"].bare == a)
            except TimeoutError:
                raise AssertionError(f"only {got}") from None
            got[p["type"]] = str(p["from"])
        assert got == {"unsubscribe": a, "unsubscribed": a, "unavailable": str(ca.boundjid)}
        await pushed(cb, a, "none")
        assert not ca.client_roster.has_jid(b) or ca.client_roster[b]["subscription"] == "remove"
        await ca.close()
        await cb.close()

    run(body())
