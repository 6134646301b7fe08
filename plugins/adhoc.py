"""XEP-0050 Ad-Hoc Commands (1.2): the framework other plugins add commands to (the XEP-0133
administration commands are plugins/admin/).

Commands are nodes of the domain, listed in disco#items of the node
``http://jabber.org/protocol/commands`` (§2.2: only those the requester may run) and
described by disco#info on their own node (identity automation/command-node; ``forbidden``
for those who may not run it). Executing one opens a session (§3.3 "sessionid"), bound to
the requester's full JID and to the command, that ends when the command completes, the
requester cancels (§2.4.3) or it expires after ``session_timeout`` seconds of silence.

Each answer says which actions come next (§3.4 <actions/>); the framework checks what the
requester sends against them, so a command sees only actions it offered. Errors are those
of §4.4 ("Possible Errors"): bad-request with malformed-action (an unknown action),
bad-action (one not offered now), bad-locale (a language other than English asked for on
<command/>: the text here is English; an iq's language, which the stream stamps on every
stanza, is not a request), bad-payload (the command refused the submitted form), and
bad-sessionid (a session this requester does not have); not-allowed with session-expired
(a session that completed, was canceled or timed out); forbidden; item-not-found (no such
command). A refused submission leaves the session open, so the form can be sent again.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from twisted.internet.interfaces import IDelayedCall
from twisted.words.xish.domish import Element

from plugins.disco import NS_INFO, NS_ITEMS, Disco
from xmppd import forms
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.iq import IqRequest
from xmppd.jid import JID
from xmppd.plugin import Plugin

NS = "http://jabber.org/protocol/commands"
ACTIONS = ("execute", "cancel", "prev", "next", "complete")
STAGE_ACTIONS = ("prev", "next", "complete")
REMEMBER_ENDED = 1000  # ended session ids kept, to tell "expired" from "never yours"

Status = Literal["executing", "completed", "canceled"]


def command_error(condition: str, specific: str | None, text: str | None = None) -> StanzaError:
    """A §4.4 error: the general condition with the commands-namespace specific one."""
    return StanzaError(condition, text=text,
                       app_condition=st.make(specific, NS) if specific else None)


@dataclass
class Reply:
    """What a command answers for a stage."""

    status: Status = "completed"
    payload: list[Element] = field(default_factory=list)  # data forms and the like
    notes: list[tuple[str, str]] = field(default_factory=list)  # (info|warn|error, text)
    actions: tuple[str, ...] = ()  # prev / next / complete offered now (executing only)
    default: str | None = None  # what "execute" means now


@dataclass
class CommandSession:
    id: str
    node: str
    requester: JID
    lang: str | None
    data: dict[str, Any] = field(default_factory=dict)  # the command's own state
    allowed: tuple[str, ...] = ()
    default: str | None = None
    timer: IDelayedCall | None = None


class Command(Protocol):
    """What a plugin registers with AdHoc.add_command."""

    node: str
    name: str

    async def allowed(self, requester: JID) -> bool: ...

    async def run(self, session: CommandSession, action: str,
                  form: forms.Form | None) -> Reply:
        """``action`` is "execute" for a new session, else one the last reply offered
        ("execute" already replaced by its default)."""
        ...


@dataclass(frozen=True)
class Options:
    session_timeout: float = 600.0  # seconds a session waits for the next stage
    max_sessions: int = 1000  # open sessions on the host (more: resource-constraint)
    max_sessions_per_requester: int = 16


def _english(lang: str) -> bool:
    return lang.lower() == "en" or lang.lower().startswith("en-")


class AdHoc(Plugin):
    name = "adhoc"
    specs = ("XEP-0050 1.2",)
    features = (NS,)
    depends = ("disco",)
    Options = Options
    live_options = True

    def setup(self) -> None:
        self.commands: dict[str, Command] = {}
        self.aliases: dict[str, str] = {}
        self.unsupported: set[str] = set()  # known nodes not offered: feature-not-implemented
        self.sessions: dict[str, CommandSession] = {}
        self.ended: OrderedDict[str, None] = OrderedDict()
        self.host.iq("set", NS, "command", self.execute)
        disco = self.host.require(Disco)
        disco.add_node("info", self.node_info)
        disco.add_node("items", self.node_items)
        self.host.on(H.SESSION_CLOSED, self.requester_gone)

    def teardown(self) -> None:
        disco = self.host.require(Disco)
        disco.remove_node("info", self.node_info)
        disco.remove_node("items", self.node_items)
        for session in list(self.sessions.values()):
            self._end(session)

    # -- registry --------------------------------------------------------------------------
    def add_command(self, command: Command, aliases: tuple[str, ...] = ()) -> None:
        """Offer a command; ``aliases`` are further nodes that run it (not listed)."""
        if command.node in self.commands:
            raise ValueError(f"command node {command.node} added twice")
        self.commands[command.node] = command
        for alias in aliases:
            self.aliases[alias] = command.node

    def remove_command(self, node: str) -> None:
        self.commands.pop(node, None)
        for alias in [a for a, n in self.aliases.items() if n == node]:
            del self.aliases[alias]

    def _command(self, node: str) -> Command | None:
        return self.commands.get(self.aliases.get(node, node))

    # -- discovery (§2.1, §2.2) ----------------------------------------------------------------
    async def node_items(self, req: IqRequest, node: str) -> Element | None:
        if node != NS:
            return None
        q = st.make("query", NS_ITEMS, {"node": NS})
        for command in self.commands.values():
            if req.from_ is not None and await command.allowed(req.from_):
                st.add(q, "item", NS_ITEMS, attrs={
                    "jid": self.host.domain, "node": command.node, "name": command.name})
        return q

    async def node_info(self, req: IqRequest, node: str) -> Element | None:
        if node == NS:
            q = st.make("query", NS_INFO, {"node": NS})
            st.add(q, "identity", NS_INFO, attrs={"category": "automation",
                                                  "type": "command-list",
                                                  "name": "Commands"})
            st.add(q, "feature", NS_INFO, attrs={"var": NS})
            return q
        command = self._command(node)
        if command is None:
            return None
        if req.from_ is None or not await command.allowed(req.from_):
            raise StanzaError("forbidden")  # §2.2: not available to the requester
        q = st.make("query", NS_INFO, {"node": node})
        st.add(q, "identity", NS_INFO, attrs={"category": "automation",
                                              "type": "command-node", "name": command.name})
        st.add(q, "feature", NS_INFO, attrs={"var": NS})
        st.add(q, "feature", NS_INFO, attrs={"var": forms.NS})
        return q

    # -- execution (§2.4) ----------------------------------------------------------------------
    async def execute(self, req: IqRequest) -> Element:
        el = req.payload
        node = el.getAttribute("node")
        if not node:
            raise StanzaError("bad-request", text="the command has no node")
        command = self._command(node)
        if command is None:
            if node in self.unsupported:  # XEP-0133 §5: a defined command not supported
                raise StanzaError("feature-not-implemented", text="this command is not offered")
            raise StanzaError("item-not-found", text="no such command")
        requester = req.from_
        if requester is None or not await command.allowed(requester):
            raise StanzaError("forbidden", text="you may not run this command")
        action = el.getAttribute("action") or "execute"
        if action not in ACTIONS:
            raise command_error("bad-request", "malformed-action", f"unknown action {action!r}")
        lang = st.lang(el)
        if lang is not None and not _english(lang):
            raise command_error("bad-request", "bad-locale", "only English (en) is available")
        sid = el.getAttribute("sessionid")
        form = self._form(el)
        if sid:
            session = self._session(sid, command, requester)
            if lang is not None and session.lang is not None and lang != session.lang:
                raise command_error("bad-request", "bad-locale",
                                    "one language per session (§3.7)")
            if action == "cancel":  # §2.4.3: always allowed, ends the session
                self._end(session)
                return self._answer(session, Reply("canceled"))
            if action == "execute":
                action = session.default or "complete"
            # §3.4: without <actions/> a stage is a single-stage dialog: execute = complete.
            if action not in (session.allowed or ("complete",)):
                raise command_error("bad-request", "bad-action",
                                    f"{action!r} is not offered at this stage")
        else:
            if action in ("cancel", "prev"):
                raise command_error("bad-request", "bad-action", f"nothing to {action}")
            session = self._open(node, command, requester, lang)
            if form is None:
                action = "execute"
        self._touch(session)
        try:
            reply = await command.run(session, action, form)
        except StanzaError:
            if not sid:  # a refused first request opened nothing
                self._end(session, remember=False)
            raise
        if reply.status == "executing":
            session.allowed = tuple(a for a in reply.actions if a in STAGE_ACTIONS)
            session.default = reply.default
        else:
            self._end(session)
        return self._answer(session, reply)

    def _form(self, el: Element) -> forms.Form | None:
        x = st.child(el, "x", forms.NS)
        if x is None:
            return None
        try:
            form = forms.Form.parse(x)
        except StanzaError as err:
            raise command_error("bad-request", "bad-payload", err.text) from None
        # §3.5.1: a requester should submit; a "cancel" form counts as a submission.
        if form.type not in ("submit", "cancel"):
            raise command_error("bad-request", "bad-payload", "submit a form of type submit")
        return form

    def _session(self, sid: str, command: Command, requester: JID) -> CommandSession:
        session = self.sessions.get(sid)
        if session is None:
            if sid in self.ended:
                raise command_error("not-allowed", "session-expired",
                                    "the session has ended")
            raise command_error("bad-request", "bad-sessionid", "no such session")
        if session.requester != requester or self._command(session.node) is not command:
            raise command_error("bad-request", "bad-sessionid", "no such session")
        return session

    def _open(self, node: str, command: Command, requester: JID,
              lang: str | None) -> CommandSession:
        if len(self.sessions) >= self.options.max_sessions or sum(
                1 for s in self.sessions.values() if s.requester == requester
        ) >= self.options.max_sessions_per_requester:
            raise StanzaError("resource-constraint", text="too many open command sessions")
        sid = f"{secrets.token_hex(8)}"
        session = CommandSession(sid, command.node, requester, lang)
        self.sessions[sid] = session
        return session

    def _touch(self, session: CommandSession) -> None:
        if session.timer is not None and session.timer.active():
            session.timer.cancel()
        session.timer = self.host.clock.callLater(self.options.session_timeout, self._end,
                                                  session)

    def _end(self, session: CommandSession, remember: bool = True) -> None:
        if session.timer is not None and session.timer.active():
            session.timer.cancel()
        session.timer = None
        if self.sessions.pop(session.id, None) is not None and remember:
            self.ended[session.id] = None
            while len(self.ended) > REMEMBER_ENDED:
                self.ended.popitem(last=False)

    def requester_gone(self, ev: H.SessionEvent) -> None:
        """A session's requester is gone: its command sessions end with it."""
        for session in [s for s in self.sessions.values() if s.requester == ev.session.jid]:
            self._end(session)

    def _answer(self, session: CommandSession, reply: Reply) -> Element:
        cmd = st.make("command", NS, {"node": session.node, "sessionid": session.id,
                                      "status": reply.status})
        cmd.attributes[(st.NS_XML, "lang")] = "en"  # §3.7: the language in use
        if reply.status == "executing" and reply.actions:
            attrs = {"execute": reply.default} if reply.default else None
            acts = st.add(cmd, "actions", NS, attrs=attrs)
            for action in reply.actions:
                st.add(acts, action, NS)
        for kind, text in reply.notes:
            st.add(cmd, "note", NS, text, attrs={"type": kind})
        for el in reply.payload:
            st.append(cmd, el)
        return cmd
