"""XEP-0313 message archive: what is archived, stanza-ids, filters, RSM paging, preferences."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.support.barrier import barrier
from tests.support.client import connect, run
from tests.support.raw import C, RawStream, stanza_error
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
SID = "urn:xmpp:sid:0"


async def mam_query(raw: RawStream, form: str = "", rsm: str = "", extra: str = "",
                    qid: str = "q") -> tuple[list[ET.Element], ET.Element]:
    """Send a query; return the forwarded messages and the final IQ."""
    x = (f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
         f"<value>{MAM}</value></field>{form}</x>") if form else ""
    s = f"<set xmlns='{RSM}'>{rsm}</set>" if rsm else ""
    await raw.send(f"<iq type='set' id='{qid}'><query xmlns='{MAM}' queryid='{qid}'>"
                   f"{x}{s}{extra}</query></iq>")
    results: list[ET.Element] = []
    while True:
        el = await raw.read()
        if el.tag == C + "message":
            res = el.find(f"{{{MAM}}}result")
            if res is None:
                continue  # a live message that happened to arrive meanwhile
            assert res.get("queryid") == qid
            results.append(res)
        elif el.tag == C + "iq" and el.get("id") == qid:
            return results, el


def field(var: str, *values: str) -> str:
    return f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values) + "</field>"


def bodies(results: list[ET.Element]) -> list[str]:
    out = []
    for r in results:
        m = r.find(f"{{urn:xmpp:forward:0}}forwarded/{C}message")
        assert m is not None
        assert r.find("{urn:xmpp:forward:0}forwarded/{urn:xmpp:delay}delay") is not None
        out.append(m.findtext(C + "body") or "")
    return out


def fin_of(iq: ET.Element) -> ET.Element:
    fin = iq.find(f"{{{MAM}}}fin")
    assert fin is not None, ET.tostring(iq)
    return fin


def test_archive_filters_paging_and_ids(server: ServerProcess) -> None:
    a, apw = server.new_user("a")
    b, _ = server.new_user("b")
    c, _ = server.new_user("c")

    async def body() -> None:
        ca = await connect(server, a + "/x")
        cb = await connect(server, b + "/x")
        cc = await connect(server, c + "/x")
        for i in range(30):
            cb.send_message(mto=a, mbody=f"b{i:02}", mtype="chat")
        got = [await ca.next_message(where=lambda m: m["type"] == "chat") for _ in range(30)]
        # the delivered copy carries the archive id, stamped by the user's own account
        sids = [m.xml.find(f"{{{SID}}}stanza-id") for m in got]
        assert all(s is not None and s.get("by") == a for s in sids)
        for i in range(10):
            ca.send_message(mto=c, mbody=f"a{i:02}", mtype="chat")
            cc.send_message(mto=a, mbody=f"c{i:02}", mtype="chat")
        ca.send_message(mto=c, mbody="typing only", mtype="chat")  # has a body: archived
        m = ca.make_message(mto=c, mtype="chat")
        m.xml.append(ET.Element("{http://jabber.org/protocol/chatstates}composing"))
        m.send()  # no body: not archived (§5.1.1)
        await barrier(ca, cc)  # routed, so archived before any later query reads
        raw = await RawStream.open(server.c2s_port)
        await raw.login(str(server.ca.ca_file), a.split("@")[0], apw, resource="q")
        everything, iq = await mam_query(raw, rsm="<max>250</max>")
        assert len(everything) == 51 and fin_of(iq).get("complete") == "true"
        assert [r.get("id") for r in everything[:30]] == [s.get("id") for s in sids]  # type: ignore[union-attr]
        # with: bare JID matches both directions
        res, _ = await mam_query(raw, form=field("with", c))
        assert sorted(bodies(res)) == sorted([f"a{i:02}" for i in range(10)] +
                                             [f"c{i:02}" for i in range(10)] + ["typing only"])
        # start / end need time to pass: tests/unit/test_mam_timing.py, on a Clock
        # forward paging with RSM
        pages: list[str] = []
        after = ""
        while True:
            res, iq = await mam_query(raw, rsm="<max>7</max>" + (
                f"<after>{after}</after>" if after else ""), qid="fwd")
            pages += bodies(res)
            fin = fin_of(iq)
            if fin.get("complete") == "true":
                break
            after = fin.findtext(f"{{{RSM}}}set/{{{RSM}}}last") or ""
        assert pages == bodies(everything)
        # backward paging: <before/> is the last page, then before=<first>
        back: list[str] = []
        before = ""
        while True:
            res, iq = await mam_query(raw, rsm="<max>8</max>" + (
                f"<before>{before}</before>" if before else "<before/>"), qid="back")
            back = bodies(res) + back
            fin = fin_of(iq)
            if fin.get("complete") == "true":
                break
            before = fin.findtext(f"{{{RSM}}}set/{{{RSM}}}first") or ""
        assert back == bodies(everything)
        # before-id / after-id / ids (urn:xmpp:mam:2#extended), flip-page
        ids = [r.get("id", "") for r in everything]
        res, _ = await mam_query(raw, form=field("after-id", ids[2]) + field("before-id", ids[6]))
        assert [r.get("id") for r in res] == ids[3:6]
        res, _ = await mam_query(raw, form=field("ids", ids[10], ids[1]))
        assert [r.get("id") for r in res] == [ids[1], ids[10]]
        res, _ = await mam_query(raw, rsm="<max>3</max>", extra=f"<flip-page xmlns='{MAM}'/>")
        assert [r.get("id") for r in res] == [ids[2], ids[1], ids[0]]
        # metadata
        iq = await raw.iq(f"<metadata xmlns='{MAM}'/>", id_="meta")
        meta = iq.find(f"{{{MAM}}}metadata")
        assert meta is not None
        assert meta.find(f"{{{MAM}}}start").get("id") == ids[0]  # type: ignore[union-attr]
        assert meta.find(f"{{{MAM}}}end").get("id") == ids[-1]  # type: ignore[union-attr]
        for x in (ca, cb, cc):
            await x.close()
        raw.close()

    run(body(), timeout=120)


def test_mam_bad_input(server: ServerProcess) -> None:
    a, apw = server.new_user("a")
    b, _ = server.new_user("b")

    async def body() -> None:
        raw = await RawStream.open(server.c2s_port)
        await raw.login(str(server.ca.ca_file), a.split("@")[0], apw, resource="q")
        _, iq = await mam_query(raw, form=field("{urn:example}bogus", "1"), qid="e1")
        assert stanza_error(iq) == ("cancel", "feature-not-implemented")
        _, iq = await mam_query(raw, form=field("start", "yesterday"), qid="e2")
        assert stanza_error(iq) == ("modify", "bad-request")
        _, iq = await mam_query(raw, rsm="<after>no-such-id</after>", qid="e3")
        assert stanza_error(iq) == ("cancel", "item-not-found")
        _, iq = await mam_query(raw, form=field("ids", "nope"), qid="e4")
        assert stanza_error(iq)[1] == "item-not-found"
        _, iq = await mam_query(raw, rsm="<max>-1</max>", qid="e5")
        assert stanza_error(iq)[1] == "bad-request"
        iq = await raw.iq(f"<query xmlns='{MAM}'/>", type_="set", to=b, id_="e6")
        assert stanza_error(iq)[1] == "forbidden"
        # the form of supported fields
        iq = await raw.iq(f"<query xmlns='{MAM}'/>", id_="form")
        vars_ = {f.get("var") for f in iq.iter("{jabber:x:data}field")}
        assert {"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"} <= vars_
        raw.close()

    run(body())


def test_preferences_and_delete_my_archive(server: ServerProcess) -> None:
    a, apw = server.new_user("a")
    b, _ = server.new_user("b")
    c, _ = server.new_user("c")

    async def body() -> None:
        raw = await RawStream.open(server.c2s_port)
        await raw.login(str(server.ca.ca_file), a.split("@")[0], apw, resource="q")
        iq = await raw.iq(f"<prefs xmlns='{MAM}' default='always'><always/>"
                          f"<never><jid>{c}</jid></never></prefs>", type_="set", id_="p1")
        prefs = iq.find(f"{{{MAM}}}prefs")
        assert prefs is not None and prefs.get("default") == "always"
        assert prefs.findtext(f"{{{MAM}}}never/{{{MAM}}}jid") == c
        await raw.send("<presence/>")
        cb = await connect(server, b + "/x")
        cc = await connect(server, c + "/x")
        cb.send_message(mto=a, mbody="keep me", mtype="chat")
        cc.send_message(mto=a, mbody="forget me", mtype="chat")
        await barrier(cb, cc)
        res, _ = await mam_query(raw, qid="p2")
        assert bodies(res) == ["keep me"]
        iq = await raw.iq(f"<prefs xmlns='{MAM}' default='never'/>", type_="set", id_="p3")
        cb.send_message(mto=a, mbody="not archived", mtype="chat")
        await barrier(cb)
        res, _ = await mam_query(raw, qid="p4")
        assert bodies(res) == ["keep me"]
        iq = await raw.iq("<purge xmlns='urn:xmppd:mam:purge:0'/>", type_="set", id_="p5")
        assert iq.get("type") == "result"
        res, iq = await mam_query(raw, qid="p6")
        assert res == [] and fin_of(iq).get("complete") == "true"
        iq = await raw.iq(f"<prefs xmlns='{MAM}' default='sometimes'/>", type_="set", id_="p7")
        assert stanza_error(iq)[1] == "bad-request"
        await cb.close()
        await cc.close()
        raw.close()

    run(body())


def test_sent_messages_are_archived_once_and_self_messages_once(server: ServerProcess) -> None:
    a, apw = server.new_user("a")

    async def body() -> None:
        ca = await connect(server, a + "/x")
        ca.send_message(mto="nobody@unknown.invalid", mbody="to a dead end", mtype="chat")
        ca.send_message(mto=a, mbody="note to self", mtype="chat")
        await ca.next_message(where=lambda m: m["body"] == "note to self")
        await barrier(ca)
        raw = await RawStream.open(server.c2s_port)
        await raw.login(str(server.ca.ca_file), a.split("@")[0], apw, resource="q")
        res, _ = await mam_query(raw)
        assert bodies(res) == ["to a dead end", "note to self"]
        await ca.close()
        raw.close()

    run(body())
