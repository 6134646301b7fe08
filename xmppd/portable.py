"""What of a session can move to another cluster node (cluster/handover.py): the
per-session state a resumed session keeps (issue 15 A2: presence and priority, directed
presences, carbons, client state and what it holds back, roster and block list interest,
push registration, any plugin's JSON value in ``session.data``) as JSON values and back.
Here, not in cluster/, because the core binds the moved session (XmppServer.move_in) and
stream management exports it (plugins/smacks/anywhere.py) without the cluster package."""

from __future__ import annotations

import json
from typing import Any

from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.logs import Logger
from xmppd.xmlparser import parse_fragment

log = Logger(namespace="xmppd.portable")

MOVED = "cluster_moved"  # session.data: the token of the binding this session continues
# session.data keys that belong to one node's process, never exported: the cluster's
# bookkeeping, SM's own object, timers and flags of the connection that died.
LOCAL_KEYS = frozenset(("sm", "ended", "moved", "kicked", "ping_pending", "csi_flushing",
                        "cluster_bound_at", "cluster_token", "cluster_written",
                        "cluster_seq", MOVED))


def export_session(session: Any) -> dict[str, Any]:
    """The per-session state a resumed session must keep (issue 15 A2), as JSON values."""
    data: dict[str, Any] = {}
    for key, value in session.data.items():
        if key in LOCAL_KEYS:
            continue
        if key == "csi_held":  # XEP-0352: what an inactive client has not been sent yet
            data[key] = {"held": [[list(k), st.serialize(el)] for k, el in value.items()]}
        elif isinstance(value, (set, frozenset)):
            data[key] = {"set": sorted(value)}
        else:
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                log.debug("session data {key} of {jid} is not portable; not moved", key=key,
                          jid=str(session.jid))
                continue
            data[key] = value
    presence = session.presence
    return {"jid": str(session.jid), "available": session.available,
            "priority": session.priority, "lang": getattr(session, "lang", None),
            "presence": st.serialize(presence) if presence is not None else None,
            "token": session.data.get("cluster_token"), "data": data}


def import_data(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "csi_held" and isinstance(value, dict):
            out[key] = {tuple(k): parse_fragment(xml) for k, xml in value.get("held", [])}
        elif isinstance(value, dict) and set(value) == {"set"}:
            out[key] = set(value["set"])
        else:
            out[key] = value
    return out


def import_presence(state: dict[str, Any]) -> Element | None:
    xml = state.get("presence")
    return parse_fragment(xml) if xml else None
