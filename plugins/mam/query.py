"""XEP-0313 §4 queries: form fields + XEP-0059 RSM -> ArchiveQuery, and result stanzas."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.words.xish.domish import Element

from storage.archive import ArchivedMessage, ArchivePage, ArchiveQuery, ArchiveStore, UnknownId
from xmppd import forms
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.jid import JID, JIDError
from xmppd.timeutil import format_datetime, parse_datetime
from xmppd.xmlparser import parse_fragment

NS = "urn:xmpp:mam:2"
NS_EXTENDED = "urn:xmpp:mam:2#extended"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_FORWARD = "urn:xmpp:forward:0"
FIELDS = frozenset(("FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"))


def query_form() -> Element:
    """The fields we support (XEP-0313 §4.1.5)."""
    form = forms.Form("form")
    form.add("FORM_TYPE", "hidden", NS)
    form.add("with", "jid-single")
    form.add("start", "text-single")
    form.add("end", "text-single")
    form.add("before-id", "text-single")
    form.add("after-id", "text-single")
    form.add("ids", "list-multi")
    x = form.to_element()
    ids = next(f for f in st.children(x, "field", forms.NS) if f.getAttribute("var") == "ids")
    validate = st.add(ids, "validate", "http://jabber.org/protocol/xdata-validate",
                      attrs={"datatype": "xs:string"})
    st.add(validate, "open")
    q = st.make("query", NS)
    st.append(q, x)
    return q


def parse_rsm(rsm: Element) -> tuple[int | None, str | None]:
    """XEP-0059 <max/> (None if absent) and <after/> text of an RSM <set/>; raises
    bad-request for a <max/> that is not a non-negative number."""
    requested = None
    max_text = st.child_text(rsm, "max", NS_RSM)
    if max_text is not None:
        try:
            requested = int(max_text)
        except ValueError:
            raise StanzaError("bad-request", text="RSM max is not a number") from None
        if requested < 0:
            raise StanzaError("bad-request", text="RSM max is negative")
    return requested, st.child_text(rsm, "after", NS_RSM)


def parse_query(payload: Element, max_page: int,
                with_map: Callable[[JID], str | None] | None = None,
                ) -> tuple[ArchiveQuery, bool]:
    """(query, flip_page); raises the errors XEP-0313 prescribes. ``with_map`` turns the
    parsed 'with' JID into the archive's key (default: its bare JID)."""
    q = ArchiveQuery(max=max_page)
    form = forms.find(payload)
    if form is not None:
        if form.form_type not in (None, NS):
            raise StanzaError("bad-request", text="FORM_TYPE must be urn:xmpp:mam:2")
        unknown = set(form.fields) - FIELDS
        if unknown:
            # §4.1.5: an unrecognised field is feature-not-implemented.
            raise StanzaError("feature-not-implemented",
                              text=f"unsupported field {sorted(unknown)[0]}")
        with_ = form.value("with")
        if with_:
            try:
                with_jid = JID.parse(with_)
            except JIDError:
                raise StanzaError("jid-malformed", text="'with' is not a JID") from None
            q.with_jid = with_jid.bare_str if with_map is None else with_map(with_jid)
        for var in ("start", "end"):
            value = form.value(var)
            if value:
                try:
                    setattr(q, var, parse_datetime(value))
                except ValueError:
                    raise StanzaError("bad-request", text=f"'{var}' is not a DateTime") from None
        if form.value("after-id"):
            q.after_ids.append(str(form.value("after-id")))
        if form.value("before-id"):
            q.before_ids.append(str(form.value("before-id")))
        ids = form.fields.get("ids")
        if ids is not None:
            q.ids = [v for v in ids.values if v]
    rsm = st.child(payload, "set", NS_RSM)
    if rsm is not None:
        requested, after = parse_rsm(rsm)
        if requested is not None:
            q.max = min(requested, max_page)
        if st.child(rsm, "index", NS_RSM) is not None:
            raise StanzaError("feature-not-implemented", text="RSM index is not supported")
        if after:
            q.after_ids.append(after)
        before = st.child(rsm, "before", NS_RSM)
        if before is not None:
            q.last_page = True  # XEP-0059 §2.5: <before/> pages backwards from the end
            if st.text(before):
                q.before_ids.append(st.text(before))
        if after and before is not None:
            raise StanzaError("bad-request", text="RSM before and after together are undefined")
    return q, st.child(payload, "flip-page", NS) is not None


def result_message(msg: ArchivedMessage, to: str, frm: str, queryid: str | None) -> Element:
    """One archived message wrapped for delivery (XEP-0313 §4.2, XEP-0297)."""
    out = st.make("message", attrs={"to": to, "from": frm})
    result = st.add(out, "result", NS, attrs={"id": msg.stanza_id})
    if queryid is not None:
        result.attributes["queryid"] = queryid
    fwd = st.add(result, "forwarded", NS_FORWARD)
    st.add(fwd, "delay", st.NS_DELAY, attrs={"stamp": format_datetime(msg.created, True)})
    st.append(fwd, parse_fragment(msg.stanza))
    return out


def fin(page: ArchivePage) -> Element:
    el = st.make("fin", NS)
    if page.complete:
        el.attributes["complete"] = "true"
    s = st.add(el, "set", NS_RSM)
    if page.messages:
        st.add(s, "first", NS_RSM, page.messages[0].stanza_id)
        st.add(s, "last", NS_RSM, page.messages[-1].stanza_id)
    return el


async def answer(archive: ArchiveStore, host: str, username: str, q: ArchiveQuery, flip: bool,
                 to: str, frm: str, queryid: str | None,
                 deliver: Callable[[Element], Awaitable[None]]) -> Element:
    """Run ``q`` on one archive, ``deliver`` each result message (§4.2, in page order or
    reversed for <flip-page/>) and return the <fin/>."""
    try:
        page = await archive.query(host, username, q)
    except UnknownId:
        raise StanzaError("item-not-found", text="no such archive id") from None
    messages = list(reversed(page.messages)) if flip else page.messages
    for msg in messages:
        await deliver(result_message(msg, to, frm, queryid))
    return fin(page)


async def metadata_element(archive: ArchiveStore, host: str, username: str) -> Element:
    """The <metadata/> answer (§5): the first and last entries of one archive."""
    first, last = await archive.bounds(host, username)
    el = st.make("metadata", NS)
    if first is not None and last is not None:
        st.add(el, "start", NS, attrs={"id": first.stanza_id,
                                       "timestamp": format_datetime(first.created)})
        st.add(el, "end", NS, attrs={"id": last.stanza_id,
                                     "timestamp": format_datetime(last.created)})
    return el
