"""PEP (XEP-0163) through the running plugin, in process: publish, retrieve, retract,
configure, delete, purge; who is notified (presence, access model, XEP-0115 +notify); the
last item for resources that come online; the error tables of XEP-0060 §6-§8."""

from __future__ import annotations

from typing import Any

import pytest

from plugins.caps import verification_string
from plugins.pep import Pep
from plugins.roster import Roster
from storage.roster import RosterItem
from tests.support.inproc import FakeSession, add_user, make_server, resolve
from xmppd import stanza as st
from xmppd.jid import JID
from xmppd.server import XmppServer
from xmppd.xmlparser import parse_fragment

PLUGINS = ["disco", "roster", "presence", "vcard", "private", "blocking", "pep"]
PUBSUB = "http://jabber.org/protocol/pubsub"
OWNER = PUBSUB + "#owner"
EVENT = PUBSUB + "#event"
ERRORS = PUBSUB + "#errors"
INFO = "http://jabber.org/protocol/disco#info"
CAPS = "http://jabber.org/protocol/caps"
NICK = "http://jabber.org/protocol/nick"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def caps_info(features: list[str]) -> st.Element:
    q = st.make("query", INFO)
    st.add(q, "identity", INFO, attrs={"category": "client", "type": "pc", "name": "t"})
    for f in ["http://jabber.org/protocol/disco#info", *features]:
        st.add(q, "feature", INFO, attrs={"var": f})
    return q


class World:
    """An in-process server with users whose clients advertise caps and answer disco."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.srv: XmppServer = make_server(PLUGINS, options=options)
        self.host = self.srv.hosts["localhost"]
        self.pep = self.host.require(Pep)
        self.asked = 0  # caps disco#info queries answered

    def user(self, name: str) -> str:
        jid = f"{name}@localhost"
        add_user(self.srv, jid)
        return jid

    def friends(self, a: str, b: str, sub_ab: str = "both", sub_ba: str = "both") -> None:
        """a's roster has b with ``sub_ab``, b's has a with ``sub_ba``."""
        roster = self.host.require(Roster)
        resolve(roster.put(JID.parse(a), RosterItem(b, sub_ab, groups=("Friends",)), False))
        resolve(roster.put(JID.parse(b), RosterItem(a, sub_ba), False))

    def online(self, full: str, notify: list[str] | None = None, priority: int = 0,
               node: str = "urn:test:client") -> FakeSession:
        """Bind, send initial presence (with caps when ``notify`` is given) and answer the
        server's caps query, if it asks."""
        s = FakeSession(self.srv, full, priority=None)
        self.presence(s, notify, priority, node)
        return s

    def presence(self, s: FakeSession, notify: list[str] | None, priority: int = 0,
                 node: str = "urn:test:client") -> None:
        p = st.make("presence")
        if priority:
            st.add(p, "priority", text_=str(priority))
        info = None
        if notify is not None:
            info = caps_info([f"{n}+notify" for n in notify])
            st.add(p, "c", CAPS, attrs={"hash": "sha-1", "node": node,
                                        "ver": verification_string(info)})
        s.stanza(p)
        self.answer_caps(s, info)

    def answer_caps(self, s: FakeSession, info: st.Element | None) -> None:
        for q in [x for x in s.sent if x.name == "iq" and x.getAttribute("type") == "get"]:
            query = st.child(q, "query", INFO)
            if query is None or info is None:
                continue
            s.sent.remove(q)
            reply = st.make("iq", attrs={"type": "result", "id": q["id"], "to": q["from"]})
            answer = st.copy(info)
            answer.attributes["node"] = query["node"]
            st.append(reply, answer)
            self.asked += 1
            s.stanza(reply)

    def iq(self, s: FakeSession, xml: str, to: str | None = None) -> st.Element:
        el = parse_fragment(xml)
        if to:
            el.attributes["to"] = to
        el.attributes.setdefault("id", "q1")
        s.stanza(el)
        replies = [x for x in s.sent if x.name == "iq" and x.getAttribute("id") == el["id"]]
        assert len(replies) == 1, [st.serialize(x) for x in s.sent]
        s.sent.remove(replies[0])
        return replies[0]


def publish(node: str, payload: str, item_id: str | None = None, options: str = "") -> str:
    attr = f" id='{item_id}'" if item_id else ""
    opts = ""
    if options:
        opts = (f"<publish-options><x xmlns='jabber:x:data' type='submit'>"
                f"<field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#publish-options"
                f"</value></field>{options}</x></publish-options>")
    return (f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='{node}'><item{attr}>"
            f"{payload}</item></publish>{opts}</pubsub></iq>")


def field(var: str, *values: str) -> str:
    return f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values) + "</field>"


def items_query(node: str, extra: str = "", inner: str = "") -> str:
    return f"<iq type='get'><pubsub xmlns='{PUBSUB}'><items node='{node}'{extra}>{inner}" \
           f"</items></pubsub></iq>"


def nick(text: str) -> str:
    return f"<nick xmlns='{NICK}'>{text}</nick>"


def error_of(reply: st.Element) -> tuple[str, str | None]:
    """(condition, pubsub#errors condition) of an error reply."""
    assert reply["type"] == "error", st.serialize(reply)
    err = st.child(reply, "error", st.NS_CLIENT)
    assert err is not None
    cond = next(c.name for c in st.children(err, ns=STANZAS) if c.name != "text")
    app = next((c.name for c in st.children(err, ns=ERRORS)), None)
    return cond, app


def events(s: FakeSession, node: str | None = None) -> list[st.Element]:
    """The <items/> (or other event children) of notifications received, then forgotten."""
    out = []
    for m in [x for x in s.sent if x.name == "message"]:
        ev = st.child(m, "event", EVENT)
        if ev is None:
            continue
        for child in st.element_children(ev):
            if node is None or child.getAttribute("node") == node:
                out.append(child)
                s.sent.remove(m)
    return out


def item_ids(items: st.Element) -> list[str]:
    return [i["id"] for i in st.children(items, "item")]


# -- publish, retrieve, retract --------------------------------------------------------------
def test_publish_autocreates_notifies_owner_and_returns_the_item_id() -> None:
    w = World()
    a = w.user("alice")
    desk = w.online(a + "/desk", notify=[NICK])
    phone = w.online(a + "/phone", notify=[])  # no +notify for nick: filtered out
    reply = w.iq(desk, publish(NICK, nick("Al")))
    assert reply["type"] == "result"
    pub = st.child(st.child(reply, "pubsub", PUBSUB), "publish", PUBSUB)
    item_id = st.child(pub, "item", PUBSUB)["id"]  # generated (§7.1.2)
    assert item_id
    [got] = events(desk, NICK)
    assert item_ids(got) == [item_id]
    assert st.child_text(st.child(got, "item", EVENT), "nick", NICK) == "Al"
    msg = [m for m in desk.sent if m.name == "message"]
    assert msg == []  # consumed above
    assert events(phone) == []
    reply = w.iq(desk, items_query(NICK))
    items = st.child(st.child(reply, "pubsub", PUBSUB), "items", PUBSUB)
    assert item_ids(items) == [item_id]


def test_notification_envelope() -> None:
    w = World()
    a, b = w.user("alice"), w.user("bob")
    w.friends(a, b)
    desk = w.online(a + "/desk", notify=[])
    bob = w.online(b + "/pc", notify=[NICK])
    w.iq(desk, publish(NICK, nick("Al"), "current"))
    [m] = [x for x in bob.sent if x.name == "message"]
    assert m["from"] == a and m["to"] == b + "/pc" and m["type"] == "headline"
    assert m.getAttribute("id")
    # XEP-0163 §4.3.1 rule 3: a contact sharing presence learns the publishing resource
    addr = st.child(st.child(m, "addresses", "http://jabber.org/protocol/address"), "address",
                    "http://jabber.org/protocol/address")
    assert addr is not None and addr["type"] == "replyto" and addr["jid"] == a + "/desk"


def test_max_items_fifo_and_max() -> None:
    w = World({"pep": {"max_items": 5}})
    a = w.user("alice")
    desk = w.online(a + "/desk", notify=["urn:test:list"])
    for i in range(3):
        w.iq(desk, publish("urn:test:list", f"<x xmlns='urn:test'>{i}</x>", f"i{i}",
                           field("pubsub#max_items", "2")))
    reply = w.iq(desk, items_query("urn:test:list"))
    assert item_ids(st.child(st.child(reply, "pubsub", PUBSUB), "items", PUBSUB)) == [
        "i1", "i2"]  # first in, first out (§7.1.2.5), oldest first
    notes = events(desk, "urn:test:list")
    retracts = [r["id"] for n in notes for r in st.children(n, "retract", EVENT)]
    assert retracts == ["i0"]  # the evicted item, notified as retracted
    # republishing moves an item to the end; max_items attribute asks for the newest (§6.5.7)
    w.iq(desk, publish("urn:test:list", "<x xmlns='urn:test'>again</x>", "i1",
                       field("pubsub#max_items", "2")))
    reply = w.iq(desk, items_query("urn:test:list", " max_items='1'"))
    assert item_ids(st.child(st.child(reply, "pubsub", PUBSUB), "items", PUBSUB)) == ["i1"]
    # 'max' means the server's limit (5 here)
    for i in range(8):
        w.iq(desk, publish("urn:test:many", f"<x xmlns='urn:test'>{i}</x>", f"m{i}",
                           field("pubsub#max_items", "max")))
    reply = w.iq(desk, items_query("urn:test:many"))
    assert item_ids(st.child(st.child(reply, "pubsub", PUBSUB), "items", PUBSUB)) == [
        f"m{i}" for i in range(3, 8)]
    # by id (§6.5.8); an unknown id is simply absent (§6.5.9.11)
    reply = w.iq(desk, items_query("urn:test:many", inner="<item id='m4'/><item id='zz'/>"))
    assert item_ids(st.child(st.child(reply, "pubsub", PUBSUB), "items", PUBSUB)) == ["m4"]


def test_retract_notifies_and_then_the_item_is_gone() -> None:
    w = World()
    a = w.user("alice")
    desk = w.online(a + "/desk", notify=[NICK])
    w.iq(desk, publish(NICK, nick("Al"), "current"))
    events(desk)
    reply = w.iq(desk, f"<iq type='set'><pubsub xmlns='{PUBSUB}'><retract node='{NICK}' "
                       f"notify='true'><item id='current'/></retract></pubsub></iq>")
    assert reply["type"] == "result"
    [note] = events(desk, NICK)
    assert [r["id"] for r in st.children(note, "retract", EVENT)] == ["current"]
    reply = w.iq(desk, items_query(NICK))
    assert item_ids(st.child(st.child(reply, "pubsub", PUBSUB), "items", PUBSUB)) == []
    reply = w.iq(desk, f"<iq type='set'><pubsub xmlns='{PUBSUB}'><retract node='{NICK}'>"
                       f"<item id='current'/></retract></pubsub></iq>")
    assert error_of(reply) == ("item-not-found", None)


# -- who is notified ----------------------------------------------------------------------
def test_contacts_by_subscription_access_model_and_notify() -> None:
    w = World()
    a, b, c, d = w.user("alice"), w.user("bob"), w.user("carol"), w.user("dave")
    w.friends(a, b)  # mutual
    w.friends(a, c)
    w.friends(a, d, sub_ab="to", sub_ba="from")  # dave does not see alice's presence
    desk = w.online(a + "/desk", notify=[])
    bob = w.online(b + "/pc", notify=[NICK])
    bob_phone = w.online(b + "/phone", notify=[NICK], priority=-1)  # §4.3.2 rule 3
    carol = w.online(c + "/pc", notify=[])  # no interest
    dave = w.online(d + "/pc", notify=[NICK])
    w.iq(desk, publish(NICK, nick("Al"), "current"))
    assert len(events(bob, NICK)) == 1
    assert events(bob_phone) == [] and events(carol) == [] and events(dave) == []
    # whitelist: only the owner (XEP-0223)
    w.iq(desk, publish("urn:test:secret", "<x xmlns='urn:test'/>", "1",
                       field("pubsub#access_model", "whitelist")))
    bob_sess = bob
    w.presence(bob_sess, [NICK, "urn:test:secret"])
    assert events(bob_sess) == []
    w.iq(desk, publish("urn:test:secret", "<x xmlns='urn:test'/>", "2"))
    assert events(bob_sess) == []


def test_blocked_contact_gets_nothing() -> None:
    w = World()
    a, b = w.user("alice"), w.user("bob")
    w.friends(a, b)
    desk = w.online(a + "/desk", notify=[])
    bob = w.online(b + "/pc", notify=[NICK])
    reply = w.iq(desk, f"<iq type='set'><block xmlns='urn:xmpp:blocking'><item jid='{b}'/>"
                       "</block></iq>")
    assert reply["type"] == "result"
    w.iq(desk, publish(NICK, nick("Al"), "current"))
    assert events(bob) == []  # XEP-0163 §4.3.3 rule 3


def test_caps_are_asked_once_per_ver_and_verified() -> None:
    w = World()
    a, b = w.user("alice"), w.user("bob")
    w.friends(a, b)
    w.online(a + "/desk", notify=[NICK])
    w.online(a + "/phone", notify=[NICK])  # same client, same ver: no second query
    w.online(b + "/pc", notify=[NICK])
    assert w.asked == 1
    # a ver that does not match the answer is not cached: every JID is asked itself
    bad = FakeSession(w.srv, b + "/bad", priority=None)
    p = st.make("presence")
    st.add(p, "c", CAPS, attrs={"hash": "sha-1", "node": "urn:x", "ver": "bogus="})
    bad.stanza(p)
    w.answer_caps(bad, caps_info([NICK + "+notify"]))
    bad2 = FakeSession(w.srv, b + "/bad2", priority=None)
    bad2.stanza(st.copy(p))
    queries = [x for x in bad2.sent if x.name == "iq"]
    assert len(queries) == 1  # asked again: the unverified answer was not cached by ver
    assert w.pep.resolver.known(JID.parse(b + "/bad"), _caps("urn:x", "bogus=")) == \
        frozenset({NICK})


def _caps(node: str, ver: str) -> Any:
    from plugins.pep.caps import Caps
    return Caps(node, ver, "sha-1")


def test_last_item_sent_to_a_contact_coming_online() -> None:
    w = World()
    a, b = w.user("alice"), w.user("bob")
    w.friends(a, b)
    desk = w.online(a + "/desk", notify=[])
    w.iq(desk, publish(NICK, nick("Al"), "current"))
    w.iq(desk, publish("urn:test:never", "<x xmlns='urn:test'/>", "1",
                       field("pubsub#send_last_published_item", "never")))
    bob = w.online(b + "/pc", notify=[NICK, "urn:test:never"])
    [note] = events(bob, NICK)
    assert item_ids(note) == ["current"]
    [m] = [x for x in bob.sent if x.name == "message"] or [None]
    assert m is None  # nothing for the node whose last item is never sent
    # the delay stamp (XEP-0163 §4.3.4 example) came with it; a status change sends nothing
    w.presence(bob, [NICK, "urn:test:never"])
    assert events(bob) == []
    # the owner's own new resource gets it too
    phone = w.online(a + "/phone", notify=[NICK])
    [note] = events(phone, NICK)
    assert item_ids(note) == ["current"]


def test_last_item_carries_a_delay_stamp() -> None:
    w = World()
    a = w.user("alice")
    desk = w.online(a + "/desk", notify=[])
    w.iq(desk, publish(NICK, nick("Al"), "current"))
    phone = w.online(a + "/phone", notify=[NICK])
    [m] = [x for x in phone.sent if x.name == "message"]
    delay = st.child(m, "delay", "urn:xmpp:delay")
    assert delay is not None and delay["stamp"].endswith("Z")


# -- configuration --------------------------------------------------------------------------
def owner_iq(inner: str, type_: str = "get") -> str:
    return f"<iq type='{type_}'><pubsub xmlns='{OWNER}'>{inner}</pubsub></iq>"


def config_form(*fields: str) -> str:
    return ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{PUBSUB}#node_config</value></field>{''.join(fields)}</x>")


def test_configure_get_set_default_delete_purge() -> None:
    w = World()
    a, b = w.user("alice"), w.user("bob")
    w.friends(a, b)
    desk = w.online(a + "/desk", notify=["urn:test:n"])
    bob = w.online(b + "/pc", notify=["urn:test:n"])
    w.iq(desk, publish("urn:test:n", "<x xmlns='urn:test'/>", "1"))
    events(desk), events(bob)
    reply = w.iq(desk, owner_iq("<configure node='urn:test:n'/>"))
    form = st.child(st.child(st.child(reply, "pubsub", OWNER), "configure", OWNER), "x",
                    "jabber:x:data")
    values = {f["var"]: st.child_text(f, "value", "jabber:x:data")
              for f in st.children(form, "field", "jabber:x:data")}
    assert values["pubsub#access_model"] == "presence" and values["pubsub#max_items"] == "1"
    reply = w.iq(desk, owner_iq("<configure node='urn:test:n'>" + config_form(
        field("pubsub#access_model", "open"), field("pubsub#max_items", "max"),
        field("pubsub#notify_config", "1")) + "</configure>", "set"))
    assert reply["type"] == "result"
    [conf] = events(bob, "urn:test:n")
    assert conf.name == "configuration"
    reply = w.iq(desk, owner_iq("<configure node='urn:test:n'/>"))
    assert "<value>open</value>" in st.serialize(reply)
    reply = w.iq(desk, owner_iq("<default/>"))
    assert "on_sub_and_presence" in st.serialize(reply)
    # purge: one notification (§8.5.2)
    reply = w.iq(desk, owner_iq("<purge node='urn:test:n'/>", "set"))
    assert reply["type"] == "result"
    [purge] = events(bob, "urn:test:n")
    assert purge.name == "purge"
    reply = w.iq(desk, items_query("urn:test:n"))
    assert item_ids(st.child(st.child(reply, "pubsub", PUBSUB), "items", PUBSUB)) == []
    # delete: notified, then gone (§8.4)
    reply = w.iq(desk, owner_iq("<delete node='urn:test:n'/>", "set"))
    assert reply["type"] == "result"
    [gone] = events(bob, "urn:test:n")
    assert gone.name == "delete"
    assert error_of(w.iq(desk, items_query("urn:test:n"))) == ("item-not-found", None)


def test_create_and_configure_then_conflict() -> None:
    w = World()
    a = w.user("alice")
    desk = w.online(a + "/desk")
    reply = w.iq(desk, f"<iq type='set'><pubsub xmlns='{PUBSUB}'><create node='urn:test:c'/>"
                       f"<configure>{config_form(field('pubsub#access_model', 'open'))}"
                       "</configure></pubsub></iq>")
    assert reply["type"] == "result"
    reply = w.iq(desk, f"<iq type='set'><pubsub xmlns='{PUBSUB}'><create node='urn:test:c'/>"
                       "</pubsub></iq>")
    assert error_of(reply) == ("conflict", None)
    reply = w.iq(desk, f"<iq type='set'><pubsub xmlns='{PUBSUB}'><create/></pubsub></iq>")
    assert error_of(reply) == ("not-acceptable", "nodeid-required")  # §8.1.1: no instant nodes


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("xml,expected", [
    # §7.1.3.7 no item / §7.1.3.6 not exactly one payload
    (f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='n'/></pubsub></iq>",
     ("bad-request", "item-required")),
    (f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='n'><item/></publish></pubsub>"
     "</iq>", ("bad-request", "invalid-payload")),
    (f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='n'><item><a xmlns='x'/>"
     "<b xmlns='x'/></item></publish></pubsub></iq>", ("bad-request", "invalid-payload")),
    (f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish><item><a xmlns='x'/></item>"
     "</publish></pubsub></iq>", ("bad-request", "nodeid-required")),
    # §7.2.3.3-4
    (f"<iq type='set'><pubsub xmlns='{PUBSUB}'><retract><item id='1'/></retract></pubsub>"
     "</iq>", ("bad-request", "nodeid-required")),
    (f"<iq type='set'><pubsub xmlns='{PUBSUB}'><retract node='n'/></pubsub></iq>",
     ("bad-request", "item-required")),
    (f"<iq type='get'><pubsub xmlns='{PUBSUB}'><items/></pubsub></iq>",
     ("bad-request", "nodeid-required")),
    (f"<iq type='get'><pubsub xmlns='{PUBSUB}'><items node='n' max_items='-2'/></pubsub></iq>",
     ("bad-request", None)),
    (f"<iq type='get'><pubsub xmlns='{PUBSUB}'><items node='nope'/></pubsub></iq>",
     ("item-not-found", None)),
    (f"<iq type='set'><pubsub xmlns='{PUBSUB}'/></iq>", ("bad-request", None)),
    (f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='a'><item><a xmlns='x'/></item>"
     f"</publish><retract node='a'><item id='1'/></retract></pubsub></iq>",
     ("bad-request", None)),
    (f"<iq type='set'><pubsub xmlns='{PUBSUB}'><subscribe node='n' jid='alice@localhost'/>"
     "</pubsub></iq>", ("feature-not-implemented", "unsupported")),
    (owner_iq("<configure/>"), ("bad-request", "nodeid-required")),
    (owner_iq("<configure node='nope'/>"), ("item-not-found", None)),
    (owner_iq("<affiliations node='n'><affiliation jid='x@y' affiliation='member'/>"
              "</affiliations>", "set"), ("feature-not-implemented", "unsupported")),
    # publish-options must be a submitted publish-options form
    (publish("n", "<a xmlns='x'/>").replace("</pubsub>", "<publish-options/></pubsub>"),
     ("bad-request", None)),
    (publish("n", "<a xmlns='x'/>", options=field("pubsub#max_items", "lots")),
     ("not-acceptable", None)),
    (publish("n", "<a xmlns='x'/>", options=field("pubsub#access_model", "authorize")),
     ("not-acceptable", "unsupported-access-model")),
])
def test_error_table(xml: str, expected: tuple[str, str | None]) -> None:
    w = World()
    a = w.user("alice")
    desk = w.online(a + "/desk")
    assert error_of(w.iq(desk, xml)) == expected


def test_precondition_conflict_and_unknown_option() -> None:
    w = World()
    a = w.user("alice")
    desk = w.online(a + "/desk")
    w.iq(desk, publish("urn:test:p", "<a xmlns='x'/>", "1"))
    reply = w.iq(desk, publish("urn:test:p", "<a xmlns='x'/>", "2",
                               field("pubsub#access_model", "open")))
    assert error_of(reply) == ("conflict", "precondition-not-met")
    reply = w.iq(desk, publish("urn:test:p", "<a xmlns='x'/>", "2",
                               field("pubsub#no_such_option", "1")))
    assert error_of(reply) == ("conflict", "precondition-not-met")
    reply = w.iq(desk, publish("urn:test:p", "<a xmlns='x'/>", "2",
                               field("pubsub#access_model", "presence")))
    assert reply["type"] == "result"  # met


def test_others_may_read_per_access_model_but_never_write() -> None:
    w = World()
    a, b, c = w.user("alice"), w.user("bob"), w.user("carol")
    w.friends(a, b)
    desk = w.online(a + "/desk")
    bob = w.online(b + "/pc")
    carol = w.online(c + "/pc")
    w.iq(desk, publish(NICK, nick("Al"), "current"))
    w.iq(desk, publish("urn:test:open", "<a xmlns='x'/>", "1",
                       field("pubsub#access_model", "open")))
    w.iq(desk, publish("urn:test:wl", "<a xmlns='x'/>", "1",
                       field("pubsub#access_model", "whitelist")))
    w.iq(desk, publish("urn:test:roster", "<a xmlns='x'/>", "1",
                       field("pubsub#access_model", "roster")
                       + field("pubsub#roster_groups_allowed", "Friends")))
    assert w.iq(bob, items_query(NICK), to=a)["type"] == "result"
    assert error_of(w.iq(carol, items_query(NICK), to=a)) == (
        "not-authorized", "presence-subscription-required")
    assert w.iq(carol, items_query("urn:test:open"), to=a)["type"] == "result"
    assert error_of(w.iq(bob, items_query("urn:test:wl"), to=a)) == ("not-allowed",
                                                                    "closed-node")
    assert w.iq(bob, items_query("urn:test:roster"), to=a)["type"] == "result"
    assert error_of(w.iq(carol, items_query("urn:test:roster"), to=a)) == (
        "not-authorized", "not-in-roster-group")
    for who in (bob, carol):
        assert error_of(w.iq(who, publish(NICK, nick("X")), to=a)) == ("forbidden", None)
        assert error_of(w.iq(who, owner_iq(f"<delete node='{NICK}'/>", "set"), to=a)) == (
            "forbidden", None)


def test_account_disco_identity_nodes_and_items() -> None:
    w = World()
    a, c = w.user("alice"), w.user("carol")
    desk = w.online(a + "/desk")
    carol = w.online(c + "/pc")
    w.iq(desk, publish(NICK, nick("Al"), "current"))
    w.iq(desk, publish("urn:test:open", "<a xmlns='x'/>", "o1",
                       field("pubsub#access_model", "open")))
    info = w.iq(carol, f"<iq type='get'><query xmlns='{INFO}'/></iq>", to=a)
    xml = st.serialize(info)
    assert "category=\"pubsub\" type=\"pep\"" in xml and "pubsub#publish-options" in xml
    items = w.iq(carol, "<iq type='get'><query xmlns='http://jabber.org/protocol/disco#items'"
                        "/></iq>", to=a)
    nodes = [i["node"] for i in st.element_children(st.element_children(items)[0])]
    assert nodes == ["urn:test:open"]  # XEP-0163 §6.2: only what carol may see
    items = w.iq(desk, "<iq type='get'><query xmlns='http://jabber.org/protocol/disco#items'"
                       "/></iq>")
    assert {i["node"] for i in st.element_children(st.element_children(items)[0])} == {
        NICK, "urn:test:open"}
    info = w.iq(carol, f"<iq type='get'><query xmlns='{INFO}' node='urn:test:open'/></iq>",
                to=a)
    assert "type=\"leaf\"" in st.serialize(info) and "pubsub#meta-data" in st.serialize(info)
    assert error_of(w.iq(carol, f"<iq type='get'><query xmlns='{INFO}' node='{NICK}'/></iq>",
                         to=a)) == ("item-not-found", None)
    node_items = w.iq(carol, "<iq type='get'><query xmlns='http://jabber.org/protocol/disco#"
                             "items' node='urn:test:open'/></iq>", to=a)
    assert [i["name"] for i in st.element_children(st.element_children(node_items)[0])] == [
        "o1"]


def test_last_item_when_interest_or_priority_appears() -> None:
    w = World()
    a, b = w.user("alice"), w.user("bob")
    w.friends(a, b)
    desk = w.online(a + "/desk", notify=[])
    w.iq(desk, publish(NICK, nick("Al"), "current"))
    w.iq(desk, publish("urn:test:mood", "<m xmlns='urn:test'/>", "m"))
    bob = w.online(b + "/pc", notify=[NICK], priority=-1)
    assert events(bob) == []  # §4.3.3 rule 2: non-negative priority only
    w.presence(bob, [NICK], priority=1)  # same caps, priority now counts
    assert [n.getAttribute("node") for n in events(bob)] == [NICK]
    w.presence(bob, [NICK, "urn:test:mood"], priority=1)  # new caps: one more interest
    assert [n.getAttribute("node") for n in events(bob)] == ["urn:test:mood"]
    # unavailable and back: everything again
    bob.stanza(st.make("presence", attrs={"type": "unavailable"}))
    w.presence(bob, [NICK, "urn:test:mood"], priority=1)
    assert sorted(n.getAttribute("node") for n in events(bob)) == [NICK, "urn:test:mood"]


def test_transient_node_keeps_only_the_last_item_in_memory() -> None:
    w = World()
    a = w.user("alice")
    desk = w.online(a + "/desk", notify=["urn:test:t"])
    for i in range(2):
        w.iq(desk, publish("urn:test:t", f"<t xmlns='urn:test'>{i}</t>", f"t{i}",
                           field("pubsub#persist_items", "false")))
    reply = w.iq(desk, items_query("urn:test:t"))
    assert item_ids(st.child(st.child(reply, "pubsub", PUBSUB), "items", PUBSUB)) == ["t1"]
    rows: list[Any] = []
    w.srv.storage.pubsub.items("localhost", "alice", "urn:test:t").addCallback(rows.append)
    assert rows == [[]]  # the node exists, nothing of it persisted
    reply = w.iq(desk, f"<iq type='set'><pubsub xmlns='{PUBSUB}'><retract node='urn:test:t'>"
                       "<item id='t1'/></retract></pubsub></iq>")
    assert error_of(reply) == ("feature-not-implemented", "unsupported")
    phone = w.online(a + "/phone", notify=["urn:test:t"])
    [note] = events(phone, "urn:test:t")
    assert item_ids(note) == ["t1"]


def test_remote_contacts_get_notifications_through_the_router() -> None:
    w = World()
    a = w.user("alice")
    remote = "romeo@montague.example"
    w.friends(a, remote)  # remote's roster entry is simply never used
    sent: list[st.Element] = []

    class Federation:
        async def receive(self, ev: Any) -> None:
            sent.append(ev.stanza)

    w.srv.router.default_route = Federation()  # type: ignore[assignment]
    desk = w.online(a + "/desk", notify=[])
    # the remote contact's presence with caps arrives at alice's bare JID
    info = caps_info([NICK + "+notify"])
    p = st.make("presence", attrs={"from": remote + "/orchard", "to": a})
    st.add(p, "c", CAPS, attrs={"hash": "sha-1", "node": "urn:r",
                                "ver": verification_string(info)})
    resolve(w.srv.router.route(p, None))
    [query] = [x for x in sent if x.name == "iq"]  # asked through federation, from alice
    assert query["to"] == remote + "/orchard" and query["from"] == a
    answer = st.make("iq", attrs={"type": "result", "id": query["id"], "from": query["to"],
                                  "to": a})
    q = st.copy(info)
    q.attributes["node"] = st.child(query, "query", INFO)["node"]
    st.append(answer, q)
    resolve(w.srv.router.route(answer, None))
    w.iq(desk, publish(NICK, nick("Al"), "current"))
    [note] = [x for x in sent if x.name == "message"]
    assert note["to"] == remote + "/orchard" and note["from"] == a
