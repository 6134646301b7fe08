"""The service itself: the admin list (XEP-0133 §4.29), restart and shut down (§4.30, §4.31),
and xmppd's own: reload, statistics, the brute-force ban list (xmppd/authguard.py)."""

from __future__ import annotations

import resource
import sys

from xmppd import __version__
from xmppd.admin.common import DELAY, admin_node, define, stamp, text, xmppd_node
from xmppd.jid import JID
from xmppd.ops import NS_XMPPD, Context, OpError, Param, Result, Table

ADMINJIDS = Param("adminjids", "adminjids", "jid-multi", "The admin list", jid="any")


async def _current_admins(ctx: Context) -> dict[str, list[str]]:
    return {"adminjids": await ctx.settings(ctx.domains[0]).admins()}


@define("edit-admin", "Edit Admin List",
        "Fill out this form to edit the list of entities who have administrative "
        "privileges.", ADMINJIDS,
        node=admin_node("edit-admin"), offline=True, prefill=_current_admins)
async def edit_admin(ctx: Context, adminjids: list[JID]) -> Result:
    """The submitted list replaces the one kept in the database; the admins named in the
    configuration file stay admins and must be in it (remove them from the file)."""
    wanted = [j.bare_str for j in adminjids]
    for domain in ctx.domains:
        missing = [a for a in ctx.settings(domain).fixed_admins() if a not in wanted]
        if missing:
            raise OpError("bad-request", f"adminjids: {', '.join(missing)} "
                          f"{'is' if len(missing) == 1 else 'are'} named in the "
                          f"configuration (hosts.{domain}.admins); remove "
                          f"{'it' if len(missing) == 1 else 'them'} there", "adminjids")
    lists = [await ctx.settings(d).set_admins(wanted) for d in ctx.domains]
    result = Result(f"admins: {', '.join(lists[0]) or 'none'}")
    result.add("adminjids", ADMINJIDS.label, "jid-multi", lists[0])
    return result


@define("admins", "Show the Admin List", "", offline=True, form_type=NS_XMPPD)
async def admins(ctx: Context) -> Result:
    result = Result()
    for domain in ctx.domains:
        settings = ctx.settings(domain)
        fixed = settings.fixed_admins()
        shown = [a + ("" if a not in fixed else " (configuration)")
                 for a in await settings.admins()]
        result.add(f"adminjids-{domain}", f"admins of {domain}", "text-multi", shown)
    return result


def _stop(ctx: Context, delay: int | None, announcement: str | None, restart: bool) -> Result:
    server = ctx.need_server()
    seconds = delay or 0
    server.schedule_stop(seconds, announcement, restart=restart, by=ctx.actor)
    what = "restarting" if restart else "shutting down"
    return Result(f"{what} in {seconds} seconds" if seconds else f"{what} now")


RESTART_DELAY = Param("delay", "delay", "list-single", "Time delay before restarting",
                      options=DELAY.options, parse=DELAY.parse)


@define("restart", "Restart Service", "Fill out this form to restart the service.",
        RESTART_DELAY, text("announcement", "Announcement"),
        node=admin_node("restart"), scope="server")
async def restart(ctx: Context, delay: int | None, announcement: str | None) -> Result:
    """§4.30: every stream ends with <system-shutdown/>, then the process runs itself
    again (same arguments, same process id)."""
    return _stop(ctx, delay, announcement, restart=True)


@define("shutdown", "Shut Down Service", "Fill out this form to shut down the service.",
        DELAY, text("announcement", "Announcement"),
        node=admin_node("shutdown"), scope="server")
async def shutdown(ctx: Context, delay: int | None, announcement: str | None) -> Result:
    """§4.31: as SIGTERM, after the delay."""
    return _stop(ctx, delay, announcement, restart=False)


@define("reload", "Reload Configuration",
        "Reload certificates and the configuration (log level, admins, authentication and "
        "limits, plugin options) without dropping sessions.",
        node=xmppd_node("reload"), scope="server", form_type=NS_XMPPD)
async def reload(ctx: Context) -> Result:
    """What SIGHUP does; what cannot change without a restart is reported, not applied."""
    report = await ctx.need_server().reload()
    result = Result("reloaded: " + (", ".join(report.reloaded) or "nothing"))
    result.add("reloaded", "Reloaded", "text-multi", report.reloaded)
    result.add("restart", "Changed, needs a restart", "text-multi", report.restart)
    result.warnings.extend(f"{key} changed: restart the server to apply it"
                           for key in report.restart)
    result.warnings.extend(report.errors)
    return result


@define("stats", "Server Statistics", "", node=xmppd_node("stats"), scope="server",
        form_type=NS_XMPPD)
async def stats(ctx: Context) -> Result:
    server = ctx.need_server()
    uptime = int(ctx.now() - server.started_at)
    users = {s.jid.bare_str for d in server.hosts for s in ctx.sessions(d) if s.jid}
    local = server.sessions.count()
    s2s = server.s2s
    streams = f"{len(s2s.inbound)} in, {len(s2s.outbound)} out" if s2s is not None else "off"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mb = rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
    values = [
        ("version", "Version", __version__),
        ("uptime", "Uptime (seconds)", str(uptime)),
        ("hosts", "Hosts", " ".join(server.hosts)),
        ("registeredusersnum", "Registered users",
         str(sum([await ctx.storage.accounts.count(d) for d in server.hosts]))),
        ("onlineusersnum", "Online users", str(len(users))),
        ("sessions", "Client sessions on this node", str(local)),
        ("connections", "Client connections on this node", str(len(server.connections))),
        ("s2s", "Server-to-server streams", streams),
        ("bans", "Authentication bans", str(len(server.auth_guard.bans()))),
        ("memory", "Peak memory (MiB)", f"{rss_mb:.0f}"),
    ]
    result = Result("\n".join(f"{label}: {v}" for _var, label, v in values))
    for var, label, v in values:
        result.add(var, label, "text-single", v)
    return result


@define("bans", "List Authentication Bans",
        "Addresses and accounts refused after too many failed logins.",
        node=xmppd_node("bans"), scope="server", form_type=NS_XMPPD)
async def bans(ctx: Context) -> Result:
    rows = [{"kind": b.kind, "key": b.key, "until": stamp(b.until),
             "failures": str(b.failures)} for b in ctx.need_server().auth_guard.bans()]
    return Result(f"{len(rows)} ban{'s' * (len(rows) != 1)}",
                  table=Table([("kind", "Kind"), ("key", "Address or account"),
                               ("until", "Until"), ("failures", "Failures")], rows))


@define("unban", "Lift an Authentication Ban", "Give the banned address or account.",
        Param("key", "key", "text-single", "Address (or /64) or account", required=True),
        node=xmppd_node("unban"), scope="server", form_type=NS_XMPPD)
async def unban(ctx: Context, key: str) -> Result:
    if not ctx.need_server().auth_guard.lift(key.strip()):
        raise OpError("item-not-found", f"key: no ban or failures recorded for {key!r}", "key")
    return Result(f"ban of {key.strip()} lifted")
