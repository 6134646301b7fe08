"""Messages from the server to its users: XEP-0133 §4.23 announcement, §4.24-4.26 message of
the day, §4.27-4.28 welcome message.

* An announcement goes to every session bound at the moment (type headline: it is for now,
  not stored offline).
* The message of the day goes at once to the sessions bound when it is set, then to each
  user at the next login (first available presence) until the user has had that text; an
  edit is a new text, so users get the corrected one too. The admin plugin delivers it.
* The welcome message goes to each account created afterwards (in-band registration or an
  administrator), as a normal message to the bare JID: the new user finds it in offline
  storage at the first login.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import defer

from xmppd import stanza as st
from xmppd.admin.common import admin_node, define, message, text
from xmppd.admin.settings import MOTD_SEEN, STORE, Motd
from xmppd.ops import Context, Result
from xmppd.timeutil import now_micros

if TYPE_CHECKING:
    from xmppd.jid import JID
    from xmppd.plugin import Host
    from xmppd.sessions import Session

MOTD_SUBJECT = "Message of the day"
WELCOME_SUBJECT = "Welcome"


async def announce_to(ctx: Context, domains: list[str], body: str) -> int:
    """Send ``body`` to every bound session of the hosts; how many."""
    server = ctx.need_server()
    sent = 0
    for domain in domains:
        host = server.hosts[domain]
        for session in ctx.sessions(domain):
            if session.jid is None:
                continue
            await host.send(message(domain, str(session.jid), body, type_="headline"))
            sent += 1
    return sent


@define("announce", "Send Announcement to Online Users",
        "Fill out this form to make an announcement to all active users of this service.",
        text("announcement", "Announcement", required=True),
        node=admin_node("announce"))
async def announce(ctx: Context, announcement: str) -> Result:
    sent = await announce_to(ctx, ctx.domains, announcement)
    return Result(f"announcement sent to {sent} session{'s' * (sent != 1)}")


async def send_motd(host: Host, session: Session, motd: Motd) -> None:
    """Deliver the message of the day to a session unless its user had it (admin plugin)."""
    jid = session.jid
    if jid is None or session.data.get("motd") == motd.id:
        return
    # Marked before waiting: the login hook and an immediate delivery may both try.
    session.data["motd"] = motd.id
    seen = await host.storage.kv.get(jid.domain, jid.local, STORE, MOTD_SEEN)
    if seen == motd.id:
        return
    await host.storage.kv.set(jid.domain, jid.local, STORE, MOTD_SEEN, motd.id)
    await host.send(message(host.domain, str(jid), motd.text, MOTD_SUBJECT))


async def _set_motd(ctx: Context, motd_text: str) -> Result:
    sent = 0
    for domain in ctx.domains:
        motd = await ctx.settings(domain).set_motd(motd_text)
        if ctx.server is None:
            continue
        host = ctx.server.hosts[domain]
        for session in ctx.sessions(domain):
            if session.jid is not None and session.available:
                host.track(defer.Deferred.fromCoroutine(send_motd(host, session, motd)))
                sent += 1
    online = f"; sent to {sent} online session{'s' * (sent != 1)}" if ctx.server else ""
    return Result(f"message of the day set{online}")


async def _current_motd(ctx: Context) -> dict[str, list[str]]:
    motd = await ctx.settings(ctx.domains[0]).motd()
    return {"motd": motd.text.split("\n")} if motd else {}


@define("set-motd", "Set Message of the Day", "Fill out this form to set the message of the day.",
        text("motd", "Message of the Day", required=True),
        node=admin_node("set-motd"), offline=True)
async def set_motd(ctx: Context, motd: str) -> Result:
    return await _set_motd(ctx, motd)


@define("edit-motd", "Edit Message of the Day",
        "Fill out this form to edit the message of the day.",
        text("motd", "Message of the Day", required=True),
        node=admin_node("edit-motd"), offline=True, cli=None, prefill=_current_motd)
async def edit_motd(ctx: Context, motd: str) -> Result:
    """§4.25: the form shows the current text; the edited one is sent again."""
    return await _set_motd(ctx, motd)


@define("delete-motd", "Delete Message of the Day", "", node=admin_node("delete-motd"),
        offline=True)
async def delete_motd(ctx: Context) -> Result:
    found = [await ctx.settings(d).delete_motd() for d in ctx.domains]
    return Result("message of the day deleted" if any(found)
                  else "there was no message of the day")


async def _current_welcome(ctx: Context) -> dict[str, list[str]]:
    welcome = await ctx.settings(ctx.domains[0]).welcome()
    return {"welcome": welcome.split("\n")} if welcome else {}


@define("set-welcome", "Set Welcome Message",
        "Fill out this form to set the welcome message for this service.",
        text("welcome", "Welcome Message", required=True),
        node=admin_node("set-welcome"), offline=True, prefill=_current_welcome)
async def set_welcome(ctx: Context, welcome: str) -> Result:
    """§4.27: the form shows the current message."""
    for domain in ctx.domains:
        await ctx.settings(domain).set_welcome(welcome)
    return Result("welcome message set")


@define("delete-welcome", "Delete Welcome Message", "", node=admin_node("delete-welcome"),
        offline=True)
async def delete_welcome(ctx: Context) -> Result:
    found = [await ctx.settings(d).delete_welcome() for d in ctx.domains]
    return Result("welcome message deleted" if any(found)
                  else "there was no welcome message")


def welcome_message(domain: str, user: JID, body: str) -> st.Element:
    return message(domain, user.bare_str, body, WELCOME_SUBJECT)


async def store_welcome(ctx: Context, user: JID) -> None:
    """Offline (the server is stopped): put the welcome message in the new account's offline
    queue, where the running server would have routed it."""
    body = await ctx.settings(user.domain).welcome()
    if body:
        stanza = welcome_message(user.domain, user, body)
        await ctx.storage.offline.store(user.domain, user.local, now_micros(ctx.now()),
                                        st.serialize(stanza), 1000)
