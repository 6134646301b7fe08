"""The plugin API: ``Plugin`` base class, ``Host`` (the only server object plugins see) and
the ``PluginManager`` that loads plugins per virtual host in dependency order.

A plugin is a module in ``plugins/`` (or any importable ``module:Class``) defining one Plugin
subclass. Everything it registers through its Host is undone when it is unloaded.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from twisted.internet.defer import Deferred
from twisted.words.xish.domish import Element

from xmppd import config as config_mod
from xmppd.errors import StanzaError, StreamError
from xmppd.hooks import CATALOGUE, BaseHook, Handler, Hook, HookBus, SyncHandler, SyncHook
from xmppd.iq import IqHandler, IqRegistry, Scope
from xmppd.jid import JID
from xmppd.logs import Logger
from xmppd.sessions import SHARED_FLAGS
from xmppd.usercache import UserCache

if TYPE_CHECKING:
    from storage.facade import Storage
    from xmppd.accounts import Accounts
    from xmppd.admin.settings import Settings
    from xmppd.ops import Context
    from xmppd.server import XmppServer
    from xmppd.sessions import Session

E = TypeVar("E")
_CORE_HOOKS = frozenset(CATALOGUE)
P = TypeVar("P", bound="Plugin")


@dataclass(frozen=True)
class NoOptions:
    """For plugins without options: any key under [plugins.<name>] is an error."""


class PluginError(Exception):
    pass


class Plugin:
    """Base class. Subclasses set the class attributes and implement ``setup``."""

    name: ClassVar[str] = ""
    specs: ClassVar[tuple[str, ...]] = ()  # e.g. ("XEP-0199 2.0.1",) for the DOAP/README table
    features: ClassVar[tuple[str, ...]] = ()  # disco#info features of the domain
    account_features: ClassVar[tuple[str, ...]] = ()  # disco#info features of bare JIDs
    identities: ClassVar[tuple[tuple[str, str, str], ...]] = ()  # (category, type, name)
    depends: ClassVar[tuple[str, ...]] = ()
    # Hooks this plugin declares and fires (Host.fire); others handle them with Host.on
    # once it is loaded, i.e. with it in their depends. The core's are in xmppd/hooks.py.
    hooks: ClassVar[tuple[BaseHook[Any], ...]] = ()
    Options: ClassVar[type] = NoOptions
    # True: options are read only when used, so a configuration reload may swap them.
    live_options: ClassVar[bool] = False

    def __init__(self, host: Host, options: Any) -> None:
        self.host = host
        self.options = options
        self.log = Logger(namespace=f"xmppd.plugins.{self.name}")

    def setup(self) -> Awaitable[None] | None:
        """Register hooks, IQ handlers and routes through ``self.host``."""

    def teardown(self) -> Awaitable[None] | None:
        """Release anything not registered through the Host (timers, files)."""

    def reload(self, options: Any) -> bool:
        """New options from a configuration reload: True if applied, False if they take a
        restart (plugins that build state from their options in setup)."""
        if not self.live_options:
            return False
        self.options = options
        return True


class Host:
    """A served domain as plugins see it. Registrations are tracked for unloading."""

    def __init__(self, server: XmppServer, domain: str) -> None:
        self._server = server
        self.domain = domain
        self.jid = JID("", domain)
        self._hooks = HookBus()  # private: plugins and the core go through on()/fire()
        self._iq = IqRegistry()  # private: iq(), answer_iq(), request(), iq_response()
        self.plugins: dict[str, Plugin] = {}
        self.extra_features: list[str] = []
        self._undo: dict[str, list[Callable[[], None]]] = {}
        self._loading: str | None = None
        self._loading_class: type[Plugin] | None = None
        self.log = Logger(namespace=f"xmppd.host.{domain}")

    # -- what plugins use -----------------------------------------------------------------
    @property
    def storage(self) -> Storage:
        return self._server.storage

    @property
    def accounts(self) -> Accounts:
        return self._server.accounts

    @property
    def config(self) -> config_mod.ServerConfig:
        return self._server.config

    @property
    def clock(self) -> Any:
        return self._server.clock

    @property
    def settings(self) -> Settings:
        """The domain's admin list, message of the day and welcome message."""
        return self._server.settings(self.domain)

    def ops_context(self, actor: str) -> Context:
        """For running an administrative operation (xmppd/ops.py) on this domain."""
        from xmppd.ops import Context

        return Context(self.config, self.storage, self.accounts, self._server,
                       domain=self.domain, actor=actor, clock=self.clock)

    @property
    def started_at(self) -> float:
        """When the server started (unix seconds), e.g. for XEP-0012 uptime."""
        return self._server.started_at

    @overload
    def on(self, hook: SyncHook[E], handler: SyncHandler[E], priority: int = 0) -> None: ...

    @overload
    def on(self, hook: Hook[E], handler: Handler[E], priority: int = 0) -> None: ...

    def on(self, hook: BaseHook[E], handler: Handler[E], priority: int = 0) -> None:
        """Handle ``hook``; higher priorities run first. A SyncHook takes plain functions
        only (no coroutines). A plugin's hook can be handled once that plugin is loaded
        (PluginError otherwise: the handler would never run)."""
        if hook not in _CORE_HOOKS and not self._declared(hook):
            raise PluginError(f"hook {hook.name!r} is neither the core's nor declared by a "
                              "loaded plugin: add the plugin declaring it to depends")
        reg = self._hooks.add(hook, handler, priority)  # type: ignore[call-overload]
        self._track(reg.remove)

    def _declared(self, hook: BaseHook[Any]) -> bool:
        loading = self._loading_class
        return (loading is not None and hook in loading.hooks) or any(
            hook in p.hooks for p in self.plugins.values())

    def fire(self, hook: Hook[E], event: E) -> Coroutine[Any, Any, bool]:
        """Run ``hook``'s handlers in priority order (await it): True once one consumed the
        event. A StanzaError propagates; any other exception is logged and the next one
        runs. (The bus's coroutine itself, not one wrapping it: this is on every stanza's
        path.)"""
        return self._hooks.fire(hook, event)

    def fire_sync(self, hook: SyncHook[E], event: E) -> bool:
        """``fire`` for a SyncHook, on a path that must not wait."""
        return self._hooks.fire_sync(hook, event)

    def has_handlers(self, hook: BaseHook[Any]) -> bool:
        """Whether anything handles ``hook`` (to skip building an event nobody reads)."""
        return self._hooks.has(hook)

    def iq(self, type_: str, ns: str, name: str, handler: IqHandler,
           scope: Scope = "host") -> None:
        """Handle IQs of ``type_`` (get/set) whose payload is <name xmlns=ns/>; see
        xmppd/iq.py for the scopes."""
        self._track(self._iq.register(type_, ns, name, handler, scope))

    def handles_iq_namespace(self, scope: Scope, ns: str) -> bool:
        return self._iq.handles_namespace(scope, ns)

    async def answer_iq(self, scope: Scope, stanza: Element, from_: JID | None,
                        to: JID | None, origin: Session | None) -> Element:
        """The reply to an IQ get/set for this host (IqRegistry.answer): for the router
        (bound sessions, peers) and for c2s streams before authentication alike."""
        return await self._iq.answer(scope, stanza, from_, to, origin, self)

    def iq_response(self, stanza: Element) -> bool:
        """An IQ result/error addressed to this host: True if it answers one of our
        ``request()``s (which it then completes)."""
        return self._iq.response(stanza)

    def new_iq_id(self) -> str:
        """An id for an IQ the server sends (unique on this node; see ``set_iq_id_prefix``)."""
        return self._iq.new_id()

    def set_iq_id_prefix(self, prefix: str) -> None:
        """Cluster: ids of server-sent IQs carry the node, so answers find their way."""
        self._iq.id_prefix = prefix

    def add_feature(self, var: str) -> None:
        """A disco feature known only at run time (static ones go in Plugin.features)."""
        self.extra_features.append(var)
        self._track(lambda: self.extra_features.remove(var))

    def add_route(self, domain: str, target: Any) -> None:
        """Serve another domain (a component such as conference.<domain>) with ``target``."""
        self._server.router.add_route(domain, target)
        self._track(lambda: self._server.router.remove_route(domain))

    def mount(self, path: str, resource: Any) -> None:
        """Serve a twisted.web resource at /path on the HTTP(S) listeners."""
        self._server.web.mount(path, resource)
        self._track(lambda: self._server.web.unmount(path))

    def listener_factory(self, listener_type: str, make: Callable[[], Any]) -> Any:
        """The protocol factory serving the server's listeners of ``listener_type`` (socks5),
        made by ``make()`` for the first host that asks and shared with the others, as one
        listener serves every host. It stays for the server's lifetime."""
        factories = self._server.listener_factories
        if listener_type not in factories:
            factories[listener_type] = make()
        return factories[listener_type]

    def listener_ports(self, listener_type: str) -> list[tuple[str, int]]:
        """(bound address, port) of each listener of a type, once listening."""
        out = []
        for kind, port in self._server.listeners:
            if kind == listener_type:
                addr: Any = port.getHost()
                out.append((str(addr.host), int(addr.port)))
        return out

    def has_listener(self, listener_type: str) -> bool:
        return any(lc.type == listener_type for lc in self.config.listeners)

    def track(self, d: Deferred[Any]) -> None:
        """Background work that a clean shutdown must wait for."""
        self._server.track(d)

    def write_behind(self, origin: Any, d: Deferred[Any]) -> None:
        """A write a stanza's durability depends on (its archive row, its offline copy),
        issued but not awaited: the stream it came from goes on with its next stanzas while
        it commits (writes are ordered), and what tells the sender the stanza is safe
        (XEP-0198 <a/>) waits for it through ``settled``. A clean shutdown waits too."""
        self._server.track(d)
        track = getattr(origin, "track_write", None)
        if track is not None:
            track(d)

    async def settled(self, session: Any) -> None:
        """Every write-behind of ``session``'s stanzas so far has committed (or failed)."""
        settled = getattr(session, "settled", None)
        if settled is not None:
            await settled()

    def mounted_paths(self) -> set[str]:
        return self._server.web.paths()

    def web_base_url(self) -> str:
        """Where this domain's HTTP resources are reachable: web.public_url, else the bound
        https listener (known once the server listens; '' before that or without one)."""
        public = self.config.web.public_url.rstrip("/")
        if public:
            return public
        port = self._server.bound_port("https")
        if port is None:
            return ""
        return f"https://{self.domain}" + ("" if port == 443 else f":{port}")

    def websocket_url(self, request: Any) -> str:
        """The RFC 7395 endpoint as the requesting browser can reach it."""
        return self._server.web.websocket_url(request)

    def bosh_url(self, request: Any) -> str:
        """The XEP-0206 endpoint as the requesting browser can reach it."""
        return self._server.web.bosh_url(request)

    def _track(self, undo: Callable[[], None]) -> None:
        self._undo.setdefault(self._loading or "", []).append(undo)

    async def send(self, stanza: Element) -> None:
        """Route a stanza generated by the server (no outbound user hooks run)."""
        await self._server.router.route(stanza, None)

    def request(self, iq: Element, timeout: float = 30.0) -> Deferred[Element]:
        """Send an IQ get/set from the server and wait for the answer (or IqTimeout)."""
        d = self._iq.expect(iq, timeout, self.clock)
        self._server.router.route_soon(iq, None)
        return d

    def share_session_flag(self, key: str) -> None:
        """``session.data[key]`` must be visible to other cluster nodes (a JSON value)."""
        SHARED_FLAGS.add(key)

    def user_cache(self, name: str) -> UserCache[Any]:
        """A per-user cache (bare JID -> value) kept coherent across cluster nodes: call
        ``changed(bare)`` on it after committing a change."""
        return self._server.caches.cache(f"{self.domain}/{name}")

    async def refresh_sessions(self, bare: JID) -> None:
        """Cluster: bring the view of the user's resources on other nodes up to date (a
        no-op on a single node)."""
        listener = self._server.sessions.listener
        if listener is not None:
            await listener.refresh(bare.bare_str)

    def session(self, full: JID) -> Session | None:
        return self._server.sessions.get(full)

    def sessions_of(self, bare: JID | str) -> list[Session]:
        return self._server.sessions.resources(bare)

    def available_sessions(self, bare: JID | str) -> list[Session]:
        return self._server.sessions.available(bare)

    def all_sessions(self) -> list[Session]:
        return [s for s in self._server.sessions.all() if s.host == self.domain]

    def end_session(self, session: Session, reason: str) -> None:
        """Finish a session a plugin kept alive (XEP-0198 hibernation timed out)."""
        self._server.end_session(session, reason)

    def takeover(self, old: Session, new: Session) -> None:
        """A resumed stream takes over a session (XEP-0198): see XmppServer.takeover."""
        self._server.takeover(old, new)  # type: ignore[arg-type]

    @property
    def handover(self) -> Any:
        """Cluster: the XEP-0198 take-over between nodes (cluster/handover.py); None on a
        single node."""
        cluster = self._server.cluster
        return cluster.handover if cluster is not None else None

    def move_out(self, session: Session, node: str) -> None:
        """The session continues on another cluster node (cluster/handover.py)."""
        self._server.move_out(session, node)  # type: ignore[arg-type]

    def move_in(self, session: Session, state: dict[str, Any]) -> None:
        """Bind ``session`` as a session another cluster node held (cluster/handover.py)."""
        self._server.move_in(session, state)  # type: ignore[arg-type]

    async def bounce(self, stanza: Element, err: StanzaError) -> None:
        """Answer ``stanza``'s sender with an error (never for errors or IQ results)."""
        await self._server.router.bounce(stanza, err)

    def require(self, cls: type[P]) -> P:
        """The loaded instance of plugin class ``cls``, typed as such. PluginError if it is not
        loaded; while a plugin sets up, also if ``cls`` is not in its ``depends`` (which is
        what guarantees it was loaded first), so a missing declaration fails every start,
        not only those whose configuration happens not to enable the other plugin."""
        key = plugin_key(cls)
        loading = self._loading_class
        if loading is not None and key not in {plugin_key(load_class(d)) for d in loading.depends}:
            raise PluginError(f"plugin {plugin_key(loading)!r} requires {key!r}: add it to "
                              f"{loading.__name__}.depends")
        found = self.plugins.get(key)
        if not isinstance(found, cls):
            raise PluginError(f"plugin {key!r} ({cls.__module__}.{cls.__name__}) is not loaded")
        return found

    def optional(self, cls: type[P]) -> P | None:
        """The loaded instance of plugin class ``cls``, or None when it is not enabled (for a
        plugin that does more when another one is there)."""
        found = self.plugins.get(plugin_key(cls))
        return found if isinstance(found, cls) else None

    def plugin(self, name: str) -> Plugin | None:
        """A plugin by its configured name, untyped (tests, introspection); plugins use
        ``require`` or ``optional``."""
        return self.plugins.get(name)

    def is_local(self, domain: str) -> bool:
        return domain in self._server.hosts

    async def account_exists(self, jid: JID) -> bool:
        if jid.domain != self.domain or not jid.local:
            return False
        if self._server.sessions.has_sessions(jid):
            return True
        return await self.storage.accounts.exists(jid.domain, jid.local)

    async def delete_account(self, jid: JID) -> bool:
        return await self._server.delete_account(jid)

    async def create_account(self, username: str, password: str) -> bool:
        """Create an account of this domain (False: it exists); ACCOUNT_CREATED fires once
        it is committed. Raises AccountError for an unacceptable password."""
        from xmppd import hooks as H

        created = await self.accounts.create(self.domain, username, password)
        if created:
            await self.fire(H.ACCOUNT_CREATED, H.AccountEvent(JID(username, self.domain)))
        return created

    def end_sessions(self, jid: JID, error: StreamError, reason: str) -> int:
        """End a full JID's session or every session of a bare JID for good (no XEP-0198
        resumption); the number ended. See XmppServer.end_sessions."""
        return self._server.end_sessions(jid, error, reason)

    # -- aggregation for disco ------------------------------------------------------------
    def all_features(self) -> list[str]:
        out: list[str] = []
        for p in self.plugins.values():
            out.extend(p.features)
        out.extend(self.extra_features)
        return sorted(set(out))

    def all_account_features(self) -> list[str]:
        return sorted({f for p in self.plugins.values() for f in p.account_features})

    def all_identities(self) -> list[tuple[str, str, str]]:
        return sorted({i for p in self.plugins.values() for i in p.identities})

    def unload_registrations(self, plugin: str) -> None:
        for undo in reversed(self._undo.pop(plugin, [])):
            undo()


def plugin_key(cls: type[Plugin]) -> str:
    """The name a plugin class is loaded under (``Plugin.name``, else its module's)."""
    return cls.name or cls.__module__.rsplit(".", 1)[-1]


def load_class(name: str) -> type[Plugin]:
    """``disco`` -> plugins.disco; ``pkg.mod:Class`` for third-party plugins."""
    module_name, _, attr = name.partition(":")
    if "." not in module_name and not attr:
        module_name = f"plugins.{module_name}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"plugins.enabled: cannot import plugin {name!r}: {exc}") from None
    if attr:
        cls = getattr(module, attr, None)
    else:
        found = [v for v in vars(module).values()
                 if inspect.isclass(v) and issubclass(v, Plugin) and v is not Plugin
                 and v.__module__ == module.__name__]
        cls = found[0] if len(found) == 1 else None
    if not (inspect.isclass(cls) and issubclass(cls, Plugin)):
        raise PluginError(f"plugins.enabled: {name!r} does not define exactly one Plugin class")
    return cls


def order(names: list[str]) -> list[type[Plugin]]:
    """Plugin classes in dependency order; missing dependencies are loaded implicitly."""
    classes: dict[str, type[Plugin]] = {}
    result: list[type[Plugin]] = []
    visiting: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in classes:
            return
        if name in visiting:
            raise PluginError(f"plugins: dependency cycle {' -> '.join((*chain, name))}")
        visiting.add(name)
        cls = load_class(name)
        for dep in cls.depends:
            visit(dep, (*chain, name))
        visiting.discard(name)
        classes[name] = cls
        result.append(cls)

    for n in names:
        visit(n, ())
    return result


def plugin_options(cfg: config_mod.ServerConfig, cls: type[Plugin], key: str) -> Any:
    return config_mod.build(cls.Options, cfg.plugin_options(key), f"plugins.{key}")


async def load_plugins(host: Host, names: list[str]) -> None:
    for cls in order(names):
        key = plugin_key(cls)
        options = plugin_options(host.config, cls, key)
        plugin = cls(host, options)
        host._loading, host._loading_class = key, cls
        try:
            result = plugin.setup()
            if inspect.isawaitable(result):
                await result
        finally:
            host._loading, host._loading_class = None, None
        host.plugins[key] = plugin


async def unload_plugins(host: Host) -> None:
    for key in reversed(list(host.plugins)):
        plugin = host.plugins.pop(key)
        try:
            result = plugin.teardown()
            if inspect.isawaitable(result):
                await result
        finally:
            host.unload_registrations(key)
