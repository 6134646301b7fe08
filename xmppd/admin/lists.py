"""Counts and lists of users (XEP-0133 §4.13-§4.22) and of sessions (xmppd's own).

"Online" users have at least one bound session (§4.15). Of those, "active" ones have a
session that is available, not away or extended away, not idle (XEP-0319) and whose client
has not said it is inactive (XEP-0352); the others are "idle", so online = active + idle
(XEP-0133 1.1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xmppd import stanza as st
from xmppd.admin.common import MAX_ITEMS, admin_node, define, xmppd_node
from xmppd.ops import NS_XMPPD, Context, Result, Table
from xmppd.sessions import Session

NS_IDLE = "urn:xmpp:idle:1"
LIST_CAP = 10000  # "none" still returns at most this many (a stanza has to carry them)


def active(session: Session) -> bool:
    if not session.available or session.data.get("csi_inactive"):
        return False
    p = session.presence
    if p is None:
        return True
    if st.child_text(p, "show", st.NS_CLIENT) in ("away", "xa"):
        return False
    return st.child(p, "idle", NS_IDLE) is None


def _online(ctx: Context, pick: Callable[[list[Session]], bool] | None = None) -> list[str]:
    users: dict[str, list[Session]] = {}
    for domain in ctx.domains:
        for s in ctx.sessions(domain):
            if s.jid is not None:
                users.setdefault(s.jid.bare_str, []).append(s)
    return sorted(u for u, sessions in users.items() if pick is None or pick(sessions))


def _is_active(sessions: list[Session]) -> bool:
    return any(active(s) for s in sessions)


def _is_idle(sessions: list[Session]) -> bool:
    return not _is_active(sessions)


def _count(var: str, label: str, n: int) -> Result:
    result = Result(f"{label}: {n}")
    result.add(var, label, "text-single", str(n))
    return result


def _list(var: str, label: str, values: list[str], max_items: int | None) -> Result:
    limit = min(max_items or LIST_CAP, LIST_CAP)
    result = Result()
    result.add(var, label, "jid-multi", values[:limit])
    if len(values) > limit:
        result.warnings.append(f"{len(values)} in all; the first {limit} are shown")
    return result


async def _accounts(ctx: Context, disabled: bool | None, limit: int | None) -> list[str]:
    out: list[str] = []
    cap = min(limit or LIST_CAP, LIST_CAP) + 1  # one more tells that there were more
    for domain in ctx.domains:
        rows = await ctx.storage.accounts.list(domain, disabled=disabled, limit=cap - len(out))
        out.extend(f"{user}@{host}" for host, user in rows)
        if len(out) >= cap:
            break
    return out


async def _registered_total(ctx: Context, disabled: bool | None = None) -> int:
    return sum([await ctx.storage.accounts.count(d, disabled=disabled) for d in ctx.domains])


@define("get-registered-users-num", "Get Number of Registered Users", "",
        node=admin_node("get-registered-users-num"), cli="registered-count", offline=True)
async def registered_num(ctx: Context) -> Result:
    return _count("registeredusersnum", "The number of registered users",
                  await _registered_total(ctx))


@define("get-disabled-users-num", "Get Number of Disabled Users", "",
        node=admin_node("get-disabled-users-num"), cli="disabled-count", offline=True)
async def disabled_num(ctx: Context) -> Result:
    return _count("disabledusersnum", "The number of disabled users",
                  await _registered_total(ctx, disabled=True))


@define("get-online-users-num", "Get Number of Online Users", "",
        node=admin_node("get-online-users-num"), cli="online-count")
async def online_num(ctx: Context) -> Result:
    return _count("onlineusersnum", "The number of online users", len(_online(ctx)))


@define("get-active-users-num", "Get Number of Active Users", "",
        node=admin_node("get-active-users-num"), cli="active-count")
async def active_num(ctx: Context) -> Result:
    return _count("activeusersnum", "The number of active users",
                  len(_online(ctx, _is_active)))


@define("get-idle-users-num", "Get Number of Idle Users", "",
        node=admin_node("get-idle-users-num"), cli="idle-count")
async def idle_num(ctx: Context) -> Result:
    return _count("idleusersnum", "The number of idle users", len(_online(ctx, _is_idle)))


@define("get-registered-users-list", "Get List of Registered Users",
        "Fill out this form to request the registered users of this service.", MAX_ITEMS,
        node=admin_node("get-registered-users-list"), cli="users", offline=True)
async def registered_list(ctx: Context, max_items: int | None) -> Result:
    return _list("registereduserjids", "The list of all users",
                 await _accounts(ctx, None, max_items), max_items)


@define("get-disabled-users-list", "Get List of Disabled Users",
        "Fill out this form to request the disabled users of this service.", MAX_ITEMS,
        node=admin_node("get-disabled-users-list"), cli="disabled-users", offline=True)
async def disabled_list(ctx: Context, max_items: int | None) -> Result:
    return _list("disableduserjids", "The list of all disabled users",
                 await _accounts(ctx, True, max_items), max_items)


@define("get-online-users-list", "Get List of Online Users",
        "Fill out this form to request the online users of this service.", MAX_ITEMS,
        node=admin_node("get-online-users-list"), cli="online-users")
async def online_list(ctx: Context, max_items: int | None) -> Result:
    return _list("onlineuserjids", "The list of all online users", _online(ctx), max_items)


# §4.21 and §4.22 name these nodes without "-list" (the registrar's list has no entry for
# them); the "-list" forms other servers use run them too.
@define("get-active-users", "Get List of Active Users",
        "Fill out this form to request the active users of this service.", MAX_ITEMS,
        node=admin_node("get-active-users"), aliases=(admin_node("get-active-users-list"),),
        cli="active-users")
async def active_list(ctx: Context, max_items: int | None) -> Result:
    return _list("activeuserjids", "The list of active users", _online(ctx, _is_active),
                 max_items)


@define("get-idle-users", "Get List of Idle Users",
        "Fill out this form to request the idle users of this service.", MAX_ITEMS,
        node=admin_node("get-idle-users"), aliases=(admin_node("get-idle-users-list"),),
        cli="idle-users")
async def idle_list(ctx: Context, max_items: int | None) -> Result:
    # §4.22's example result names the field "activeuserjids" (its label says idle users);
    # the registrar has no idle-user field, so that is what clients know.
    return _list("activeuserjids", "The list of idle users", _online(ctx, _is_idle),
                 max_items)


def _state(s: Session) -> dict[str, Any]:
    show = ""
    if s.available:
        show = (st.child_text(s.presence, "show", st.NS_CLIENT) if s.presence is not None
                else None) or "available"
    return {"presence": show or "unavailable",
            "client": "inactive" if s.data.get("csi_inactive") else "active"}


@define("sessions", "List Sessions",
        "The sessions bound on this service: address, presence and client state.",
        node=xmppd_node("sessions"), form_type=NS_XMPPD)
async def sessions(ctx: Context) -> Result:
    rows = []
    for domain in ctx.domains:
        for s in sorted(ctx.sessions(domain), key=lambda s: str(s.jid)):
            if s.jid is None:
                continue
            remote = s.kind == "remote"
            rows.append({"jid": str(s.jid), "resource": s.jid.resource,
                         "address": s.peer if remote else str(getattr(s, "peer_host", s.peer)),
                         "kind": s.kind, "priority": str(s.priority),
                         "tls": "" if remote else "yes" if getattr(s, "tls_active", False)
                         else "no", **_state(s)})
    columns = [("jid", "JID"), ("address", "Address"), ("kind", "Kind"),
               ("presence", "Presence"), ("priority", "Priority"),
               ("client", "Client state"), ("tls", "TLS")]
    return Result(f"{len(rows)} session{'s' * (len(rows) != 1)}", table=Table(columns, rows))
