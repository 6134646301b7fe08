"""Operations on accounts: XEP-0133 §4.1-§4.10 (add, delete, disable, re-enable, end
sessions, change password, roster, last login, statistics).

Every JID of a request is checked (valid, an account of the host the admin may act on, and
existing where the operation needs it) before the first one is acted on, so a bad JID in a
list changes nothing."""

from __future__ import annotations

from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.accounts import AccountError
from xmppd.admin.common import accountjid, accountjids, admin_node, define, jids, stamp
from xmppd.admin.messages import store_welcome
from xmppd.errors import StreamError
from xmppd.jid import JID
from xmppd.ops import Context, OpError, Param, Result, Table


def _listing(done: list[JID]) -> str:
    return ", ".join(j.bare_str for j in done)


@define("add-user", "Add User", "Fill out this form to add a user.",
        accountjid("The Jabber ID for the account to be added"),
        Param("password", "password", "text-private", "The password for this account",
              required=True),
        Param("password_verify", "password-verify", "text-private", "Retype password",
              cli=False),
        Param("email", "email", "text-single", "Email address"),
        Param("given_name", "given_name", "text-single", "Given name"),
        Param("surname", "surname", "text-single", "Family name"),
        node=admin_node("add-user"), cli="adduser", offline=True, scope="account")
async def add_user(ctx: Context, accountjid: JID, password: str, password_verify: str | None,
                   email: str | None, given_name: str | None, surname: str | None) -> Result:
    """§4.1. email, given_name and surname are accepted and not kept (a user's vCard is
    theirs to publish)."""
    if password_verify is not None and password_verify != password:
        raise OpError("bad-request", "password-verify: the passwords do not match",
                      "password_verify")
    domain, user = accountjid.domain, accountjid.local
    try:
        if ctx.server is not None:
            created = await ctx.server.hosts[domain].create_account(user, password)
        else:
            created = await ctx.accounts.create(domain, user, password)
            if created:
                await store_welcome(ctx, accountjid)
    except AccountError as exc:
        raise OpError("bad-request", f"password: {exc}", "password") from None
    if not created:
        raise OpError("conflict", f"{accountjid.bare_str} already exists", "accountjid")
    return Result(f"created {accountjid.bare_str}")


@define("delete-user", "Delete User", "Fill out this form to delete a user.",
        accountjids("The Jabber ID(s) to delete"),
        node=admin_node("delete-user"), cli="deluser", offline=True, scope="account")
async def delete_user(ctx: Context, accountjids: list[JID]) -> Result:
    """§4.2: the account and every bit of its data; its sessions end."""
    await ctx.existing(accountjids, "accountjids")
    for j in accountjids:
        if ctx.server is not None:
            await ctx.server.delete_account(j)
        else:
            await ctx.storage.accounts.delete(j.domain, j.local)
    whose = "its" if len(accountjids) == 1 else "their"
    return Result(f"deleted {_listing(accountjids)} and all of {whose} data")


@define("disable-user", "Disable User", "Fill out this form to disable a user.",
        accountjids("The Jabber ID(s) to disable"),
        node=admin_node("disable-user"), cli="disable", offline=True, scope="account")
async def disable_user(ctx: Context, accountjids: list[JID]) -> Result:
    """§4.3: logins are refused (RFC 6120 §6.5.1 <account-disabled/>) and the sessions end;
    no data is removed."""
    await ctx.existing(accountjids, "accountjids")
    ended = 0
    for j in accountjids:
        await ctx.storage.accounts.set_disabled(j.domain, j.local, True)
        await ctx.storage.fast.revoke(j.domain, j.local)  # XEP-0484 tokens log in no more
        if ctx.server is not None:
            await ctx.server.hosts[j.domain].refresh_sessions(j)
            ended += ctx.server.end_sessions(
                j, StreamError("not-authorized", "account disabled"), "account disabled")
    return Result(f"disabled {_listing(accountjids)}"
                  + (f" ({ended} session{'s' * (ended != 1)} ended)" if ended else ""))


@define("reenable-user", "Re-Enable User", "Fill out this form to re-enable a user.",
        accountjids("The Jabber ID(s) to re-enable"),
        node=admin_node("reenable-user"), cli="enable", offline=True, scope="account")
async def reenable_user(ctx: Context, accountjids: list[JID]) -> Result:
    """§4.4."""
    await ctx.existing(accountjids, "accountjids")
    for j in accountjids:
        await ctx.storage.accounts.set_disabled(j.domain, j.local, False)
    return Result(f"re-enabled {_listing(accountjids)}")


@define("end-user-session", "End User Session", "Fill out this form to end a user's session.",
        accountjids("The Jabber ID(s) for which to end sessions", kind="session"),
        node=admin_node("end-user-session"), cli="kick", scope="account")
async def end_user_session(ctx: Context, accountjids: list[JID]) -> Result:
    """§4.5: a bare JID ends every session of the user, a full JID that one; the user may
    log in again. The stream ends with <policy-violation/> and is not kept for resumption."""
    server = ctx.need_server()
    ended = 0
    for j in accountjids:
        # A kicked client must not come straight back with its FAST token (XEP-0484): all of
        # the user's tokens for a bare JID, that client's for a full one.
        if not j.resource:
            await ctx.storage.fast.revoke(j.domain, j.local)
        for session in server.sessions.resources(j.bare):
            client = session.data.get("client")
            if j.resource and session.jid == j and client:
                await ctx.storage.fast.revoke(j.domain, j.local, client)
        await server.hosts[j.domain].refresh_sessions(j.bare)
        ended += server.end_sessions(
            j, StreamError("policy-violation", "session ended by an administrator"),
            "ended by an administrator")
    return Result(f"ended {ended} session{'s' * (ended != 1)} of {', '.join(jids(accountjids))}")


@define("change-user-password", "Change User Password",
        "Fill out this form to change a user's password.",
        accountjid("The Jabber ID for this account"),
        Param("password", "password", "text-private", "The password for this account",
              required=True),
        node=admin_node("change-user-password"), cli="passwd", offline=True, scope="account")
async def change_user_password(ctx: Context, accountjid: JID, password: str) -> Result:
    """§4.7. Sessions stay (a client's stored password is its own business)."""
    try:
        changed = await ctx.accounts.set_password(accountjid.domain, accountjid.local, password)
    except AccountError as exc:
        raise OpError("bad-request", f"password: {exc}", "password") from None
    if not changed:
        raise OpError("item-not-found", f"no such user {accountjid.bare_str}",
                      "accountjid")
    return Result(f"password changed for {accountjid.bare_str}")


@define("get-user-roster", "Get User Roster", "Fill out this form to get a user's roster.",
        accountjids("The Jabber ID(s) for which to retrieve the roster"),
        node=admin_node("get-user-roster"), cli="roster", offline=True, scope="account")
async def get_user_roster(ctx: Context, accountjids: list[JID]) -> Result:
    """§4.8: items (and pending subscription requests, for the command line)."""
    await ctx.existing(accountjids, "accountjids")
    several = len(accountjids) > 1
    columns = [("jid", "Contact"), ("subscription", "Subscription"), ("flags", "Flags"),
               ("name", "Name"), ("groups", "Groups")]
    rows: list[dict[str, str]] = []
    lines = []
    for j in accountjids:
        version, items = await ctx.storage.roster.get(j.domain, j.local)
        pending = await ctx.storage.roster.pending(j.domain, j.local)
        lines.append(f"roster of {j.bare_str} (version {version}, {len(items)} items)")
        for item in sorted(items, key=lambda i: i.contact):
            flags = " ".join(f for f, on in (("ask", item.ask), ("approved", item.approved))
                             if on)
            rows.append({"account": j.bare_str, "jid": item.contact,
                         "subscription": item.subscription, "flags": flags,
                         "name": item.name or "", "groups": "\n".join(item.groups)})
        for contact in pending:
            rows.append({"account": j.bare_str, "jid": contact, "subscription": "none",
                         "flags": "pending-in", "name": "", "groups": ""})
    if several:
        columns.insert(0, ("account", "Account"))
    result = Result("\n".join(lines), table=Table(columns, rows))
    result.add("accountjids", "The Jabber ID(s)", "jid-multi", jids(accountjids))
    return result


def roster_query(result: Result) -> list[Element]:
    """The roster as XEP-0133 §4.8 shows it: a jabber:iq:roster <query/> per account."""
    queries: dict[str, Element] = {}
    accounts = next((f.values for f in result.fields if f.var == "accountjids"), [])
    for account in accounts:
        queries[account] = st.make("query", "jabber:iq:roster")
    for row in (result.table.rows if result.table else []):
        if row["flags"] == "pending-in":
            continue
        q = queries.get(row.get("account", accounts[0] if accounts else ""))
        if q is None:
            continue
        attrs = {"jid": row["jid"], "subscription": row["subscription"]}
        if row["name"]:
            attrs["name"] = row["name"]
        if "ask" in row["flags"].split():
            attrs["ask"] = "subscribe"
        item = st.add(q, "item", attrs=attrs)
        for group in filter(None, row["groups"].split("\n")):
            st.add(item, "group", text_=group)
    return list(queries.values())


@define("get-user-lastlogin", "Get User Last Login Time",
        "Fill out this form to get a user's last login time.",
        accountjids("The Jabber ID(s) for which to retrieve the last login time"),
        node=admin_node("get-user-lastlogin"), cli="lastlogin", offline=True, scope="account")
async def get_user_lastlogin(ctx: Context, accountjids: list[JID]) -> Result:
    """§4.9: an XEP-0082 DateTime per account ("" if it never logged in since xmppd
    records it); a login is written within a minute, the running server also knows later
    ones."""
    await ctx.existing(accountjids, "accountjids")
    stamps, lines = [], []
    for j in accountjids:
        when = ctx.server.logins.get(j.domain, j.local) if ctx.server is not None else None
        if when is None:
            info = await ctx.storage.accounts.info(j.domain, j.local)
            when = info.last_login if info is not None else None
        stamps.append(stamp(when))
        lines.append(f"{j.bare_str}: {stamp(when) or 'never logged in'}")
    result = Result("\n".join(lines))
    result.add("accountjids", "The Jabber ID(s)", "jid-multi", jids(accountjids))
    result.add("lastlogin", "The last login time", "text-multi" if len(stamps) > 1
               else "text-single", stamps)
    return result


@define("user-stats", "Get User Statistics", "Fill out this form to gather user statistics.",
        accountjid("The Jabber ID for statistics"),
        node=admin_node("user-stats"), cli="userstats", offline=True, scope="account")
async def user_stats(ctx: Context, accountjid: JID) -> Result:
    """§4.10: roster size, and the addresses and resources of the online sessions."""
    await ctx.existing([accountjid], "accountjid")
    _version, items = await ctx.storage.roster.get(accountjid.domain, accountjid.local)
    sessions = []
    if ctx.server is not None:
        await ctx.server.hosts[accountjid.domain].refresh_sessions(accountjid)
        sessions = ctx.server.sessions.resources(accountjid)
    addresses = sorted({str(getattr(s, "peer_host", "")) for s in sessions
                        if s.kind != "remote"} - {""})
    resources = sorted(s.jid.resource for s in sessions if s.jid is not None)
    result = Result(f"{accountjid.bare_str}: {len(items)} roster items, "
                    f"{len(resources)} online resource{'s' * (len(resources) != 1)}")
    result.add("accountjid", "The Jabber ID", "jid-single", accountjid.bare_str)
    result.add("rostersize", "Number of roster items", "text-single", str(len(items)))
    result.add("onlineresources", "Online resources", "text-multi", resources)
    result.add("ipaddresses", "IP addresses of the online sessions", "list-multi", addresses)
    return result
