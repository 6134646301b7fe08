"""XEP-0133 Service Administration (1.2): every administrative operation of xmppd/ops.py with
a command node is an XEP-0050 command of each host, for the host's admins (the configured
``[hosts."x"] admins`` and those added with edit-admin); everyone else gets ``forbidden``
and sees no commands. An admin acts on the accounts of the host the command was sent to.

XEP-0133 §4 flows are followed: a command with fields answers the first request with its
form (edit-motd, set-welcome and edit-admin filled in with the current values), the
submission completes it; one without fields (the counts, delete-motd, delete-welcome)
completes at once. Bad input (a malformed or foreign JID, a missing field, an unknown
account in a list) is refused with bad-request/bad-payload naming the field, before anything
is done, and the session stays open for a corrected form. The XEP's own error conditions
(conflict for an existing account, §5) come as themselves.

Not offered: get-user-password (only SCRAM verifiers are stored) and the blacklist and
whitelist (server-wide blocking is not implemented).

This plugin also delivers the message of the day at login and the welcome message to new
accounts (xmppd/admin/messages.py says how).
"""

from __future__ import annotations

from plugins.adhoc import AdHoc, CommandSession, Reply, command_error
from plugins.admin.render import notes, request_form, result_payload, submitted
from xmppd import forms, ops
from xmppd import hooks as H
from xmppd.admin.messages import send_motd, welcome_message
from xmppd.errors import STANZA_CONDITIONS, StanzaError
from xmppd.jid import JID
from xmppd.plugin import Plugin

# XEP-0133 §4.6, §4.11, §4.12: answered feature-not-implemented (§5), not item-not-found.
NOT_OFFERED = ("get-user-password", "edit-blacklist", "add-to-blacklist-in",
               "add-to-blacklist-out", "edit-whitelist", "add-to-whitelist",
               "add-to-whitelist-in", "add-to-whitelist-out")


def stanza_error(err: ops.OpError) -> StanzaError:
    """A field at fault is XEP-0050 bad-payload (an unknown account in a list included);
    other conditions (XEP-0133 §5 conflict ...) come as themselves."""
    if err.field and err.condition in ("bad-request", "item-not-found"):
        return command_error("bad-request", "bad-payload", err.text)
    condition = err.condition if err.condition in STANZA_CONDITIONS else "undefined-condition"
    return StanzaError(condition, text=err.text)


class OpCommand:
    """An operation as an ad-hoc command (the Command protocol of plugins/adhoc.py)."""

    def __init__(self, plugin: Admin, op: ops.Operation) -> None:
        assert op.node is not None
        self.node = op.node
        self.name = op.title
        self.op = op
        self.plugin = plugin

    async def allowed(self, requester: JID) -> bool:
        return not self.op.admin_only or await self.plugin.host.settings.is_admin(
            requester.bare_str)

    async def run(self, session: CommandSession, action: str,
                  form: forms.Form | None) -> Reply:
        ctx = self.plugin.host.ops_context(str(session.requester))
        try:
            if form is not None:
                return await self._complete(ctx, submitted(self.op, form))
            if action != "execute":
                raise command_error("bad-request", "bad-payload", "no form was submitted")
            if not self.op.params:
                return await self._complete(ctx, {})
            values = await self.op.prefill(ctx) if self.op.prefill is not None else {}
        except ops.OpError as err:
            raise stanza_error(err) from None
        return Reply("executing", [request_form(self.op, values)], actions=("complete",),
                     default="complete")

    async def _complete(self, ctx: ops.Context, raw: dict[str, list[str]]) -> Reply:
        result = await ops.execute(self.op, ctx, raw)
        return Reply("completed", result_payload(self.op, result), notes(result))


class Admin(Plugin):
    name = "admin"
    specs = ("XEP-0133 1.2 (all but get-user-password and the black- and whitelists)",)
    depends = ("adhoc",)

    def setup(self) -> None:
        self.adhoc = self.host.require(AdHoc)
        for op in ops.operations():
            if op.node is not None:
                self.adhoc.add_command(OpCommand(self, op), op.aliases)
        self.adhoc.unsupported.update(f"{ops.NS_ADMIN}#{name}" for name in NOT_OFFERED)
        self.host.on(H.SESSION_AVAILABLE, self.motd)
        self.host.on(H.ACCOUNT_CREATED, self.welcome)

    def teardown(self) -> None:
        for op in ops.operations():
            if op.node is not None:
                self.adhoc.remove_command(op.node)
        self.adhoc.unsupported.difference_update(f"{ops.NS_ADMIN}#{name}" for name in NOT_OFFERED)

    async def motd(self, ev: H.SessionEvent) -> None:
        """XEP-0133 §4.24: at login, unless the user had this message of the day."""
        motd = await self.host.settings.motd()
        if motd is not None:
            await send_motd(self.host, ev.session, motd)

    async def welcome(self, ev: H.AccountEvent) -> None:
        """XEP-0133 §4.27: to each new account (kept offline until it logs in)."""
        body = await self.host.settings.welcome()
        if body:
            await self.host.send(welcome_message(self.host.domain, ev.jid, body))
