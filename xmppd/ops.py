"""Administrative operations, each defined once and offered three ways: as an XEP-0050 ad-hoc
command to the admins of a host (plugins/adhoc.py, plugins/admin/), as a request on the
control socket of the running server (xmppd/control.py) and as an ``xmppd`` subcommand
(xmppd/__main__.py), which asks the running server through that socket or, when it is not
running and the operation allows it, runs against storage itself.

An ``Operation`` declares its parameters with what each surface needs: the XEP-0004 field
(``var`` from XEP-0133 §5, type, label) for forms, the name for control requests and command
lines. Every value, whatever it came from, is a list of strings checked by ``parse`` before
``run`` is called, so bad input is refused the same way everywhere and nothing is half
done: ``OpError`` with ``field`` set names the parameter at fault.

The definitions live in ``xmppd/admin/`` (accounts, lists, messages, service).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from xmppd.jid import JID, JIDError
from xmppd.logs import Logger

if TYPE_CHECKING:
    from storage.facade import Storage
    from xmppd.accounts import Accounts
    from xmppd.admin.settings import Settings
    from xmppd.config import ServerConfig
    from xmppd.server import XmppServer
    from xmppd.sessions import Session

log = Logger(namespace="xmppd.ops")

NS_ADMIN = "http://jabber.org/protocol/admin"  # XEP-0133 nodes and FORM_TYPE
NS_XMPPD = "urn:xmppd:admin"  # xmppd's own commands (sessions, reload, bans ...)

MAX_VALUES = 10000  # values of one multi-valued parameter
MAX_TEXT = 65536  # characters of one text parameter

JidKind = Literal["", "account", "session", "any"]
Scope = Literal["account", "host", "server"]


class OpError(Exception):
    """An operation refused or failed. ``condition`` is an RFC 6120 §8.3.3 stanza error
    condition (the ad-hoc commands answer with it); ``field`` names the parameter at fault
    when the input was bad, in which case nothing was done."""

    def __init__(self, condition: str, text: str, field: str | None = None) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text
        self.field = field


@dataclass(frozen=True)
class Param:
    name: str  # keyword of run(), key of control requests, command line argument
    var: str  # XEP-0004 field var (XEP-0133's name)
    type: str  # XEP-0004 field type
    label: str
    required: bool = False
    options: tuple[tuple[str, str], ...] = ()  # list-single: (label, value)
    jid: JidKind = ""  # jid-*: "account" (user@host), "session" (user@host[/res]), "any"
    parse: Callable[[str], Any] | None = None  # single values: text -> value (ValueError)
    cli: bool = True  # False: not a command line argument (a password's repetition)

    @property
    def multi(self) -> bool:
        return self.type in ("jid-multi", "list-multi")


@dataclass
class OutField:
    var: str
    label: str
    type: str
    values: list[str]


@dataclass
class Table:
    columns: list[tuple[str, str]]  # (key, label)
    rows: list[dict[str, str]]

    def lines(self) -> list[str]:
        """As text: a header and a line per row, in aligned columns."""
        rows = [[row.get(key, "").replace("\n", ", ") for key, _label in self.columns]
                for row in self.rows]
        header = [label for _key, label in self.columns]
        widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=False)]
        return ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
                for line in (header, *rows)]


@dataclass
class Result:
    """What an operation reports: a line for people, result form fields, maybe a table.
    JSON-serialisable (the control socket carries it as is)."""

    message: str = ""
    fields: list[OutField] = field(default_factory=list)
    table: Table | None = None
    warnings: list[str] = field(default_factory=list)

    def add(self, var: str, label: str, type_: str, values: Iterable[str] | str) -> None:
        self.fields.append(OutField(var, label, type_,
                                    [values] if isinstance(values, str) else list(values)))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Result:
        table = data.get("table")
        return cls(str(data.get("message", "")),
                   [OutField(**f) for f in data.get("fields", [])],
                   None if table is None else Table([tuple(c) for c in
                                                     table["columns"]], table["rows"]),
                   list(data.get("warnings", [])))


Run = Callable[..., Awaitable[Result]]
Prefill = Callable[["Context"], Awaitable[dict[str, list[str]]]]


@dataclass(frozen=True)
class Operation:
    name: str  # control request op; the command line name unless ``cli`` says otherwise
    title: str
    instructions: str
    run: Run
    params: tuple[Param, ...] = ()
    node: str | None = None  # ad-hoc command node; None: not an ad-hoc command
    aliases: tuple[str, ...] = ()  # further nodes executing it (not listed in disco)
    cli: str | None = ""  # "": ``name``; None: not a subcommand
    offline: bool = False  # may run against storage alone while the server is down
    scope: Scope = "host"  # account: JIDs say where; host: one or every host; server
    prefill: Prefill | None = None  # current values for the form (edit-motd, edit-admin)
    admin_only: bool = True
    form_type: str = NS_ADMIN

    @property
    def cli_name(self) -> str | None:
        return None if self.cli is None else (self.cli or self.name)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


REGISTRY: dict[str, Operation] = {}


def register(op: Operation) -> Operation:
    if op.name in REGISTRY:
        raise ValueError(f"operation {op.name} defined twice")
    REGISTRY[op.name] = op
    return op


def operations() -> list[Operation]:
    """Every operation (the definitions are imported on first use)."""
    importlib.import_module("xmppd.admin")
    return list(REGISTRY.values())


def get(name: str) -> Operation:
    operations()
    op = REGISTRY.get(name)
    if op is None:
        raise OpError("item-not-found", f"no operation {name!r}")
    return op


def by_node(node: str) -> Operation | None:
    for op in operations():
        if op.node == node or node in op.aliases:
            return op
    return None


class Context:
    """What an operation may use. ``server`` is None when it runs offline (the CLI with the
    server stopped); ``domain`` is the host an ad-hoc command was sent to (its admin may act
    on that host only), else the host(s) the request names or every host."""

    def __init__(self, config: ServerConfig, storage: Storage, accounts: Accounts,
                 server: XmppServer | None = None, domain: str | None = None,
                 actor: str = "cli", clock: Any = None) -> None:
        self.config = config
        self.storage = storage
        self.accounts = accounts
        self.server = server
        self.domain = domain
        self.actor = actor
        self.clock = clock
        self.domains: list[str] = [domain] if domain else list(config.hosts)
        self._settings: dict[str, Settings] = {}

    @property
    def online(self) -> bool:
        return self.server is not None

    def need_server(self) -> XmppServer:
        if self.server is None:
            raise OpError("service-unavailable", "the server is not running")
        return self.server

    def now(self) -> float:
        if self.clock is not None:
            return float(self.clock.seconds())
        import time

        return time.time()

    def settings(self, domain: str) -> Settings:
        """The host's admin list, message of the day and welcome message."""
        if self.server is not None:
            return self.server.settings(domain)
        found = self._settings.get(domain)
        if found is None:
            from xmppd.admin.settings import Settings

            found = self._settings[domain] = Settings(self.storage, domain, self.config)
        return found

    def sessions(self, domain: str) -> list[Session]:
        """Every session of the host's users, on this node and (cluster) the others."""
        server = self.need_server()
        found: list[Session] = [s for s in server.sessions.all() if s.host == domain]
        for resources in server.sessions.remote_tables():
            found.extend(s for s in resources if s.host == domain)
        return found

    async def existing(self, jids: Iterable[JID], param: str) -> None:
        """Refuse the request unless every account exists (before anything is changed)."""
        for j in jids:
            if not await self.storage.accounts.exists(j.domain, j.local):
                raise OpError("item-not-found", f"no such user {j.bare_str}", param)


def _jid(p: Param, value: str, ctx: Context) -> JID:
    try:
        j = JID.parse(value.strip())
    except JIDError as exc:
        raise OpError("bad-request", f"{p.var}: {value!r} is not a valid JID ({exc})",
                      p.name) from None
    if p.jid == "any":
        if j.resource:
            raise OpError("bad-request", f"{p.var}: {j} has a resource (a bare JID please)",
                          p.name)
        return j
    if not j.local or (j.resource and p.jid != "session"):
        raise OpError("bad-request", f"{p.var}: {j} is not an account (user@domain)", p.name)
    if j.domain not in ctx.domains:
        where = f"this service ({ctx.domain})" if ctx.domain else "a host of this server"
        raise OpError("bad-request", f"{p.var}: {j} is not an account of {where}", p.name)
    return j


def _one(p: Param, value: str, ctx: Context) -> Any:
    if len(value) > MAX_TEXT:
        raise OpError("bad-request", f"{p.var}: too long", p.name)
    if p.type.startswith("jid-"):
        return _jid(p, value, ctx)
    if p.type == "boolean":
        v = value.strip()
        if v not in ("0", "1", "true", "false"):  # XEP-0004 §3.3
            raise OpError("bad-request", f"{p.var}: not a boolean", p.name)
        return v in ("1", "true")
    if p.options and value not in [v for _label, v in p.options]:
        choices = ", ".join(v for _label, v in p.options)
        raise OpError("bad-request", f"{p.var}: {value!r} is not one of {choices}", p.name)
    if p.parse is not None:
        try:
            return p.parse(value)
        except ValueError as exc:
            raise OpError("bad-request", f"{p.var}: {exc}", p.name) from None
    return value


def normalise(value: Any) -> list[str]:
    """A control request's JSON value as the list of strings a form field carries."""
    if value is None:
        return []
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, str | int | float):
        return [str(value)]
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return [str(v) for v in value]
    raise OpError("bad-request", "values must be strings or lists of strings")


def parse(op: Operation, raw: Mapping[str, list[str]], ctx: Context) -> dict[str, Any]:
    """Check and convert every parameter; OpError (naming it) on the first bad one."""
    args: dict[str, Any] = {}
    for p in op.params:
        values = raw.get(p.name) or []
        if len(values) > MAX_VALUES:
            raise OpError("bad-request", f"{p.var}: too many values", p.name)
        if p.type == "text-multi":  # XEP-0004 §3.3: one value per line
            text = "\n".join(values).strip("\n")
            if len(text) > MAX_TEXT:
                raise OpError("bad-request", f"{p.var}: too long", p.name)
            values = [text] if text.strip() else []
        elif not p.multi:
            values = [v for v in values if v.strip()]
            if len(values) > 1:
                raise OpError("bad-request", f"{p.var}: takes one value", p.name)
        if not values:
            if p.required:
                raise OpError("bad-request", f"{p.var}: a value is required ({p.label})",
                              p.name)
            args[p.name] = [] if p.multi else None
            continue
        converted = [_one(p, v, ctx) for v in values]
        if p.multi:
            seen: list[Any] = []
            for v in converted:
                if v not in seen:
                    seen.append(v)
            args[p.name] = seen
        else:
            args[p.name] = converted[0]
    return args


async def execute(op: Operation, ctx: Context, raw: Mapping[str, list[str]]) -> Result:
    """Parse and run; anything but OpError is logged and reported as an internal error
    (never a traceback to whoever asked)."""
    if not op.offline and not ctx.online:
        raise OpError("service-unavailable", f"{op.name} needs the running server")
    args = parse(op, raw, ctx)
    try:
        result = await op.run(ctx, **args)
    except OpError as err:
        log.info("{actor}: {op} refused: {text}", actor=ctx.actor, op=op.name, text=err.text)
        raise
    except Exception:
        log.failure("operation {op} failed", op=op.name)
        raise OpError("internal-server-error", f"{op.name} failed; see the server log") \
            from None
    log.info("{actor}: {op}{where}", actor=ctx.actor, op=op.name,
             where=f" on {ctx.domain}" if ctx.domain else "")  # who did what (no values)
    return result
