"""Service discovery (XEP-0045 §6) of the service and its rooms: identities, features, the
XEP-0128 muc#roominfo form (§6.4), the list of public rooms with XEP-0059 paging (§6.3),
and the reserved-nickname node (§7.12).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.words.xish.domish import Element

from plugins.mam import query as mq
from plugins.muc import affiliations as A
from plugins.muc import ns
from xmppd import forms
from xmppd import stanza as st
from xmppd.errors import StanzaError

if TYPE_CHECKING:
    from plugins.muc.iq import Request
    from plugins.muc.room import Room
    from plugins.muc.service import MucService

SERVICE_FEATURES = (ns.DISCO_INFO, ns.DISCO_ITEMS, ns.MUC, ns.STABLE_ID, ns.OCCUPANT_ID,
                    ns.PING)


def _query(xmlns: str, node: str | None) -> Element:
    q = st.make("query", xmlns)
    if node:
        q.attributes["node"] = node
    return q


def service_info(service: MucService, req: Request) -> Element:
    if req.payload.getAttribute("node"):
        raise StanzaError("item-not-found")
    q = _query(ns.DISCO_INFO, None)
    st.add(q, "identity", ns.DISCO_INFO, attrs={"category": "conference", "type": "text",
                                                "name": service.options.name})
    for var in SERVICE_FEATURES:  # XEP-0421 §4: occupant ids are on in every room
        st.add(q, "feature", ns.DISCO_INFO, attrs={"var": var})
    return q


def service_items(service: MucService, req: Request) -> Element:
    """§6.3: the public rooms, paged with RSM when the list is long."""
    if req.payload.getAttribute("node"):
        raise StanzaError("item-not-found")
    rooms = sorted((r for r in service.rooms.values()
                    if r.config.public and not r.locked and not r.destroyed),
                   key=lambda r: r.jid.bare_str)
    limit = service.options.max_disco_items
    rsm = st.child(req.payload, "set", ns.RSM)
    start = 0
    if rsm is not None:
        requested, after = mq.parse_rsm(rsm)
        if requested is not None:
            limit = min(limit, requested)
        if after:
            start = next((i + 1 for i, r in enumerate(rooms) if r.jid.bare_str == after), -1)
            if start < 0:
                raise StanzaError("item-not-found", text="unknown RSM 'after'")
    page = rooms[start:start + limit]
    q = _query(ns.DISCO_ITEMS, None)
    for r in page:
        attrs = {"jid": r.jid.bare_str}
        if r.config.name:
            attrs["name"] = r.config.name
        st.add(q, "item", ns.DISCO_ITEMS, attrs=attrs)
    if rsm is not None or len(rooms) > len(page):
        s = st.add(q, "set", ns.RSM)
        if page:
            st.add(s, "first", ns.RSM, page[0].jid.bare_str, attrs={"index": str(start)})
            st.add(s, "last", ns.RSM, page[-1].jid.bare_str)
        st.add(s, "count", ns.RSM, str(len(rooms)))
    return q


def room_features(room: Room) -> list[str]:
    c = room.config
    out = [ns.DISCO_INFO, ns.DISCO_ITEMS, ns.MUC, ns.STABLE_ID, ns.SELF_PING, ns.OCCUPANT_ID,
           ns.ROOMCONFIG, ns.ROOMINFO, ns.REQUEST, ns.SID, ns.PING,
           ns.MODERATE, ns.RETRACT,  # XEP-0425 §2, XEP-0424 §2
           "muc_public" if c.public else "muc_hidden",
           "muc_persistent" if c.persistent else "muc_temporary",
           "muc_passwordprotected" if c.password_protected else "muc_unsecured",
           "muc_membersonly" if c.members_only else "muc_open",
           "muc_moderated" if c.moderated else "muc_unmoderated",
           "muc_nonanonymous" if c.non_anonymous else "muc_semianonymous"]
    if c.archiving:
        out += [mq.NS, mq.NS_EXTENDED, ns.TOMBSTONE]  # XEP-0313 §7, XEP-0424 §4
    return out


def room_info(service: MucService, room: Room, req: Request) -> Element:
    node = req.payload.getAttribute("node")
    if node == ns.ROOMUSER_NODE:  # §7.12: the requester's reserved nickname, if any
        q = _query(ns.DISCO_INFO, node)
        a = room.affiliations.get(req.from_.bare_str)
        if a is not None and a.nick and a.affiliation != A.OUTCAST:
            st.add(q, "identity", ns.DISCO_INFO, attrs={"category": "conference",
                                                        "type": "text", "name": a.nick})
        return q
    if node == ns.TRAFFIC:  # §17.1.1: every namespace passes through
        raise StanzaError("service-unavailable")
    if node:
        raise StanzaError("item-not-found")
    q = _query(ns.DISCO_INFO, None)
    st.add(q, "identity", ns.DISCO_INFO, attrs={"category": "conference", "type": "text",
                                                "name": room.config.name or room.name})
    for var in room_features(room):
        st.add(q, "feature", ns.DISCO_INFO, attrs={"var": var})
    st.append(q, room_info_form(room))
    return q


def room_info_form(room: Room) -> Element:
    """§6.4 / XEP-0128: the muc#roominfo extension."""
    c = room.config
    form = forms.Form("result")
    form.add("FORM_TYPE", "hidden", ns.ROOMINFO)
    form.add("muc#roominfo_description", None, c.description, "Description")
    form.add("muc#roominfo_subject", None, room.subject.text, "Current Discussion Topic")
    form.add("muc#roominfo_occupants", None, str(len(room.occupants)), "Number of occupants")
    form.add("muc#roomconfig_roomname", None, c.name, "Natural-Language Room Name")
    form.add("muc#roomconfig_changesubject", None, "1" if c.change_subject else "0",
             "Occupants May Change the Subject")
    form.add("muc#roominfo_subjectmod", None, "1" if c.change_subject else "0",
             "The room subject can be modified by participants")
    form.add("muc#maxhistoryfetch", None, str(c.history_length),
             "Maximum Number of History Messages Returned by Room")
    if c.lang:
        form.add("muc#roominfo_lang", None, c.lang, "Language of discussion")
    if c.non_anonymous:  # owners' addresses only where real JIDs are public anyway (§20.4)
        form.add("muc#roominfo_contactjid", None,
                 [a.jid for a in room.with_affiliation(A.OWNER)], "Contact Addresses")
    return form.to_element()


def room_items(service: MucService, room: Room, req: Request) -> Element:
    """§6.5: the occupant list is private (the recommended default): an empty result."""
    if req.payload.getAttribute("node"):
        raise StanzaError("item-not-found")
    return _query(ns.DISCO_ITEMS, None)
