"""TOML configuration -> frozen dataclasses; every error names the offending key.

Plugins declare their own ``Options`` dataclass and it is validated with the same loader,
so `[plugins.ping] interval = "x"` fails at start as ``plugins.ping.interval: expected int``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from xmppd.jid import JID, JIDError, prepare_domain

T = TypeVar("T")


class ConfigError(ValueError):
    """Raised with a message that starts with the dotted path of the bad key."""


DEFAULT_PLUGINS: tuple[str, ...] = (
    "disco", "ping", "version", "time", "roster", "presence", "offline", "mam", "carbons",
    "smacks", "csi", "hints", "webclient", "vcard", "search", "register", "blocking",
    "private", "last", "caps", "muc",
    "upload", "extdisco", "contact", "proxy65",
    "pep", "push",
    "adhoc", "admin",
)


@dataclass(frozen=True)
class ListenerConfig:
    """One listening socket. type: c2s (STARTTLS), c2s_tls (XEP-0368 direct TLS), s2s, s2s_tls,
    http, https, component (XEP-0114, plain TCP), component_tls (XEP-0114 inside TLS), socks5
    (the XEP-0065 bytestreams proxy of the proxy65 plugin)."""

    type: Literal["c2s", "c2s_tls", "s2s", "s2s_tls", "http", "https", "component",
                  "component_tls", "socks5"]
    port: int
    # Empty: 127.0.0.1 for component listeners (a component's secret and stanzas cross them
    # unencrypted), 0.0.0.0 for the others.
    address: str = ""
    # c2s/c2s_tls: SO_REUSEPORT, so that several cluster nodes on one machine share the port
    # (the kernel spreads connections over them). Needs a fixed port.
    reuse_port: bool = False
    # HAProxy's PROXY protocol v1/v2 (xmppd/proxyproto.py; c2s, c2s_tls, s2s, s2s_tls, http,
    # https): a connection from a trusted address must start with a header naming the client,
    # whose address then counts as the peer's (logs, bans, limits); one from elsewhere is
    # served as it is but refused if it sends a header.
    proxy_protocol: bool = False
    # The networks allowed to send the header; None: [proxy_protocol] trusted.
    proxy_trusted: list[str] | None = None


# XEP-0157 address kinds, the fields registered for the FORM_TYPE
# http://jabber.org/network/serverinfo ("<kind>-addresses", XMPP Registrar).
CONTACT_KINDS = ("abuse", "admin", "feedback", "sales", "security", "status", "support")


@dataclass(frozen=True)
class ContactConfig:
    """XEP-0157 contact addresses of a host ([hosts."example.org".contact]): URIs such as
    "mailto:abuse@example.org", "xmpp:admin@example.org", "https://example.org/support"."""

    abuse: list[str] = field(default_factory=list)
    admin: list[str] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    sales: list[str] = field(default_factory=list)
    security: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    support: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HostConfig:
    """A virtual host (a served domain)."""

    cert: str = ""
    key: str = ""
    plugins: list[str] | None = None  # replaces [plugins].enabled for this host when set
    # Bare JIDs that may run the administrative commands (XEP-0133) for this host; more can
    # be added at run time (edit-admin), these stay.
    admins: list[str] = field(default_factory=list)
    # XEP-0157 contact addresses in the domain's disco#info (the contact plugin).
    contact: ContactConfig = ContactConfig()


@dataclass(frozen=True)
class StorageConfig:
    url: str = ""  # default: sqlite file in data_dir
    pool_size: int = 8


@dataclass(frozen=True)
class TLSConfig:
    require_c2s: bool = True  # STARTTLS mandatory before SASL (RFC 6120 §5.3.1)
    min_version: Literal["1.2", "1.3"] = "1.2"
    self_signed: bool = True  # generate a dev certificate for hosts without one
    ciphers: str = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS"


@dataclass(frozen=True)
class AuthConfig:
    mechanisms: list[str] = field(
        default_factory=lambda: ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
    iteration_count: int = 4096
    max_failures_per_stream: int = 5
    channel_binding: bool = True  # offer SCRAM-*-PLUS (tls-exporter, tls-server-end-point)
    sasl2: bool = True  # offer SASL2 (XEP-0388) with Bind 2 (XEP-0386) beside RFC 6120 SASL
    fast: bool = True  # FAST tokens (XEP-0484) over SASL2
    fast_token_ttl: float = 21 * 86400.0  # seconds a FAST token lives (rotated at half)
    throttle_after: int = 3  # failures per IP before replies are delayed
    throttle_max_delay: float = 30.0
    # Brute-force bans (xmppd/authguard.py)
    ban_after: int = 10  # failures from one address (IPv6: its /64) within ban_window
    account_ban_after: int = 5  # failures for one account from any address
    ban_window: float = 600.0
    ban_time: float = 600.0
    max_unauthenticated_per_ip: int = 128
    exempt_networks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LimitsConfig:
    max_stanza_size: int = 262144  # RFC 6120 §13.12; advertised via XEP-0478
    max_preauth_stanza_size: int = 16384  # the same before the peer has authenticated
    c2s_idle_timeout: float = 0  # 0 = no raw idle timeout (ping plugin handles liveness)
    handshake_timeout: float = 60.0  # stream must reach bound state within this


@dataclass(frozen=True)
class DomainPolicy:
    """Per remote domain federation overrides ([federation.domains."example.org"])."""

    require_valid_certificates: bool | None = None  # None: the global setting
    connect: str = ""  # "host:port" (STARTTLS) or "tls://host:port" (direct TLS), no DNS


@dataclass(frozen=True)
class FederationConfig:
    """Server-to-server (RFC 6120, XEP-0178, XEP-0220, XEP-0368)."""

    enabled: bool = True
    require_tls: bool = True  # STARTTLS (or direct TLS) before anything else, both directions
    require_valid_certificates: bool = False  # False: dialback when the cert does not verify
    dialback: bool = True  # offer and use XEP-0220 server dialback
    dialback_secret: str = ""  # XEP-0185 key secret; empty: a random one kept in data_dir
    ca_file: str = ""  # trust anchors for peer certificates; empty: the system store
    connect_timeout: float = 20.0  # seconds to resolve, connect and authenticate
    idle_timeout: float = 600.0  # close an unused stream after this many seconds
    max_queue: int = 1000  # stanzas queued per remote domain while connecting
    domains: dict[str, DomainPolicy] = field(default_factory=dict)


@dataclass(frozen=True)
class WebConfig:
    """The HTTP(S) listeners: WebSocket (RFC 7395), discovery (XEP-0156), plugin resources."""

    public_url: str = ""  # e.g. "https://chat.example.org" behind a proxy; empty: from Host
    websocket_origins: list[str] = field(default_factory=list)  # allowed Origins; "*" = any
    trusted_proxies: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])
    # Slow clients (xmppd/web.py): seconds from the connection (TLS handshake included), or
    # from the end of the last request, to the end of the next request's headers; and how
    # many connections of one address may be at that stage at once.
    header_timeout: float = 30.0
    max_pending_per_ip: int = 128


@dataclass(frozen=True)
class ProxyProtocolConfig:
    """Defaults for listeners with ``proxy_protocol = true`` (xmppd/proxyproto.py)."""

    # Addresses of the load balancers (HAProxy) allowed to send a PROXY header.
    trusted: list[str] = field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    timeout: float = 10.0  # seconds a trusted connection has to send its whole header


@dataclass(frozen=True)
class BoshConfig:
    """XMPP over BOSH (XEP-0124, XEP-0206) at /http-bind on the http(s) listeners. Times are
    whole seconds, as the protocol's attributes are."""

    enabled: bool = True
    max_wait: int = 60  # longest a request is held open; the client's 'wait' when shorter
    max_hold: int = 1  # requests held at once; the client's 'hold' when fewer
    inactivity: int = 60  # a session with no request open this long has ended
    max_pause: int = 120  # longest pause a client may ask for (XEP-0124 §10); 0: none
    polling: int = 2  # two empty requests closer than this are too frequent (§11, §12)
    origins: list[str] = field(default_factory=list)  # other browser Origins; "*" = any


@dataclass(frozen=True)
class ClusterConfig:
    """Several nodes sharing one database and one Redis (cluster/node.py). Every node needs
    the same hosts, plugins and storage URL (PostgreSQL or MariaDB) and its own node id."""

    redis_url: str = ""  # e.g. "redis://127.0.0.1:6379/0"; empty: a single node
    node: str = ""  # this node's id, unique in the cluster; empty: hostname-pid
    prefix: str = "xmppd"  # Redis key and channel prefix (one cluster per prefix)
    heartbeat: float = 2.0  # seconds between liveness refreshes
    node_timeout: float = 6.0  # a node silent this long is gone and its sessions end
    connect_timeout: float = 10.0  # at start: Redis must answer within this, or no start


@dataclass(frozen=True)
class ComponentConfig:
    """An external component allowed to connect ([components."irc.example.org"], XEP-0114)."""

    secret: str  # the shared secret of the <handshake/>
    name: str = ""  # its name in the parent domain's disco#items; empty: its own identity's


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus exposition at /<path> on the http(s) listeners (xmppd/metrics.py). Only
    for administrators: a request must come from ``allow_networks`` and, when ``token`` is
    set, carry ``Authorization: Bearer <token>``."""

    enabled: bool = True
    path: str = "metrics"
    allow_networks: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    token: str = ""
    offline_cache: float = 10.0  # seconds the count of offline messages is reused


@dataclass(frozen=True)
class LogConfig:
    level: Literal["debug", "info", "warn", "error"] = "info"
    format: Literal["text", "json"] = "text"
    file: str = ""  # empty: stderr


@dataclass(frozen=True)
class ServerConfig:
    hosts: dict[str, HostConfig]
    listeners: list[ListenerConfig]
    data_dir: str = "data"
    storage: StorageConfig = StorageConfig()
    tls: TLSConfig = TLSConfig()
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    log: LogConfig = LogConfig()
    federation: FederationConfig = FederationConfig()
    web: WebConfig = WebConfig()
    proxy_protocol: ProxyProtocolConfig = ProxyProtocolConfig()
    bosh: BoshConfig = BoshConfig()
    cluster: ClusterConfig = ClusterConfig()
    components: dict[str, ComponentConfig] = field(default_factory=dict)
    metrics: MetricsConfig = MetricsConfig()
    plugins: dict[str, Any] = field(default_factory=dict)
    # "turnwrite": xmppd.reactor (writes of a reactor turn leave in one send); "stock":
    # Twisted's default reactor, for comparison and as a fallback if a Twisted release
    # changes what xmppd.reactor builds on.
    reactor: Literal["turnwrite", "stock"] = "turnwrite"
    base_dir: str = "."  # directory relative paths are resolved against (the config's)

    @property
    def storage_url(self) -> str:
        if self.storage.url:
            return self.storage.url
        return f"sqlite:///{self.resolve(self.data_dir) / 'xmppd.sqlite'}"

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else Path(self.base_dir) / p

    def enabled_plugins(self, host: str) -> list[str]:
        hc = self.hosts[host]
        if hc.plugins is not None:
            return list(hc.plugins)
        return list(self.plugins.get("enabled", DEFAULT_PLUGINS))

    def plugin_options(self, name: str) -> dict[str, Any]:
        opts = self.plugins.get(name, {})
        return opts if isinstance(opts, dict) else {}


DEFAULT_LISTENERS = [
    {"type": "c2s", "port": 5222, "address": "0.0.0.0"},
    {"type": "c2s_tls", "port": 5223, "address": "0.0.0.0"},
    {"type": "s2s", "port": 5269, "address": "0.0.0.0"},
    {"type": "s2s_tls", "port": 5270, "address": "0.0.0.0"},
    {"type": "http", "port": 5280, "address": "0.0.0.0"},
    {"type": "https", "port": 5281, "address": "0.0.0.0"},
    {"type": "socks5", "port": 5000, "address": "0.0.0.0"},
]


def load(path: str | Path | None) -> ServerConfig:
    """Load a config file (None = the embedded default: localhost, SQLite, dev cert)."""
    if path is None:
        return from_dict({}, base_dir=".")
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    return from_dict(raw, base_dir=str(p.parent.resolve()))


def from_dict(raw: dict[str, Any], base_dir: str = ".") -> ServerConfig:
    data = dict(raw)
    data.setdefault("hosts", {"localhost": {}})
    data.setdefault("listeners", DEFAULT_LISTENERS)
    plugins = data.pop("plugins", {})
    if not isinstance(plugins, dict):
        raise ConfigError("plugins: expected a table")
    enabled = plugins.get("enabled", list(DEFAULT_PLUGINS))
    if not (isinstance(enabled, list) and all(isinstance(x, str) for x in enabled)):
        raise ConfigError("plugins.enabled: expected a list of plugin names")
    for k, v in plugins.items():
        if k != "enabled" and not isinstance(v, dict):
            raise ConfigError(f"plugins.{k}: expected a table of options")
    data["base_dir"] = base_dir
    cfg = build(ServerConfig, data, "")
    cfg = dataclasses.replace(cfg, plugins=plugins)
    _validate(cfg)
    return cfg


def _validate(cfg: ServerConfig) -> None:
    if not cfg.hosts:
        raise ConfigError("hosts: at least one host is required")
    if cfg.web.header_timeout <= 0:
        raise ConfigError("web.header_timeout: must be positive")
    if cfg.web.max_pending_per_ip < 1:
        raise ConfigError("web.max_pending_per_ip: must be at least 1")
    normalised: dict[str, HostConfig] = {}
    for name, hc in cfg.hosts.items():
        try:
            dom = prepare_domain(name)
        except JIDError as exc:
            raise ConfigError(f"hosts.{name}: not a valid domain: {exc}") from None
        if bool(hc.cert) != bool(hc.key):
            raise ConfigError(f"hosts.{name}: cert and key must be given together")
        object.__setattr__(hc, "admins", [_admin_jid(a, f"hosts.{name}.admins")
                                          for a in hc.admins])
        _validate_contact(hc.contact, f"hosts.{name}.contact")
        normalised[dom] = hc
    object.__setattr__(cfg, "hosts", normalised)
    seen: set[tuple[str, int]] = set()
    for i, lc in enumerate(cfg.listeners):
        if not lc.address:
            local = lc.type.startswith("component")
            object.__setattr__(lc, "address", "127.0.0.1" if local else "0.0.0.0")
        if not 0 <= lc.port <= 65535:
            raise ConfigError(f"listeners[{i}].port: out of range")
        if lc.port and (lc.address, lc.port) in seen:
            raise ConfigError(f"listeners[{i}]: duplicate address {lc.address}:{lc.port}")
        seen.add((lc.address, lc.port))
        _validate_proxy(cfg, lc, f"listeners[{i}]")
    for mech in cfg.auth.mechanisms:
        if mech not in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
            raise ConfigError(f"auth.mechanisms: unknown mechanism {mech!r}")
    for key in ("ban_after", "account_ban_after", "max_unauthenticated_per_ip"):
        if getattr(cfg.auth, key) < 1:
            raise ConfigError(f"auth.{key}: must be at least 1")
    for key in ("ban_window", "ban_time"):
        if getattr(cfg.auth, key) <= 0:
            raise ConfigError(f"auth.{key}: must be positive")
    for net in cfg.auth.exempt_networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"auth.exempt_networks: {net!r} is not a network") from None
    _validate_metrics(cfg.metrics)
    if cfg.auth.iteration_count < 4096:
        raise ConfigError("auth.iteration_count: must be at least 4096 (RFC 7677)")
    if cfg.limits.max_stanza_size < 10000:
        raise ConfigError("limits.max_stanza_size: must be at least 10000 (RFC 6120 §13.12)")
    if not 4096 <= cfg.limits.max_preauth_stanza_size <= cfg.limits.max_stanza_size:
        raise ConfigError("limits.max_preauth_stanza_size: must be between 4096 and "
                          "limits.max_stanza_size")
    _validate_federation(cfg.federation)
    _validate_components(cfg)
    _validate_bosh(cfg.bosh)


PROXY_LISTENERS = ("c2s", "c2s_tls", "s2s", "s2s_tls", "http", "https")


def _validate_proxy(cfg: ServerConfig, lc: ListenerConfig, where: str) -> None:
    if cfg.proxy_protocol.timeout <= 0:
        raise ConfigError("proxy_protocol.timeout: must be positive")
    for i, net in enumerate(cfg.proxy_protocol.trusted):
        _network(net, f"proxy_protocol.trusted[{i}]")
    if lc.proxy_trusted is not None:
        if not lc.proxy_protocol:
            raise ConfigError(f"{where}.proxy_trusted: only with proxy_protocol = true")
        for i, net in enumerate(lc.proxy_trusted):
            _network(net, f"{where}.proxy_trusted[{i}]")
    if not lc.proxy_protocol:
        return
    if lc.type not in PROXY_LISTENERS:
        raise ConfigError(f"{where}.proxy_protocol: not for {lc.type} listeners (only "
                          + ", ".join(PROXY_LISTENERS) + ")")
    trusted = cfg.proxy_protocol.trusted if lc.proxy_trusted is None else lc.proxy_trusted
    if not trusted:
        raise ConfigError(f"{where}.proxy_trusted: no trusted network to accept the PROXY "
                          "header from")


def _network(spec: str, where: str) -> None:
    try:
        ipaddress.ip_network(spec, strict=False)
    except ValueError:
        raise ConfigError(f"{where}: {spec!r} is not a network") from None


def _validate_bosh(b: BoshConfig) -> None:
    if not 1 <= b.max_wait <= 3600:
        raise ConfigError("bosh.max_wait: between 1 and 3600 seconds")
    if not 1 <= b.max_hold <= 10:
        raise ConfigError("bosh.max_hold: between 1 and 10")
    if b.inactivity < 5:
        raise ConfigError("bosh.inactivity: at least 5 seconds")
    if not 0 <= b.max_pause <= 86400:
        raise ConfigError("bosh.max_pause: between 0 and 86400 seconds")
    if b.polling < 0:
        raise ConfigError("bosh.polling: must not be negative")


def _validate_components(cfg: ServerConfig) -> None:
    components: dict[str, ComponentConfig] = {}
    for name, comp in cfg.components.items():
        try:
            dom = prepare_domain(name)
        except JIDError as exc:
            raise ConfigError(f"components.{name}: not a valid domain: {exc}") from None
        if dom in cfg.hosts:
            raise ConfigError(f"components.{name}: already a host (hosts.{dom})")
        if dom in components:
            raise ConfigError(f"components.{name}: configured twice")
        if not comp.secret:
            raise ConfigError(f"components.{name}.secret: must not be empty")
        components[dom] = comp
    object.__setattr__(cfg, "components", components)
    if components and not any(lc.type.startswith("component") for lc in cfg.listeners):
        raise ConfigError("listeners: components are configured but no listener has "
                          "type = \"component\" or \"component_tls\"")


def _validate_metrics(m: MetricsConfig) -> None:
    path = m.path.strip("/")
    if not path or "/" in path:
        raise ConfigError("metrics.path: one path segment, such as \"metrics\"")
    for net in m.allow_networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ConfigError(f"metrics.allow_networks: {net!r} is not a network") from None
    if m.offline_cache < 0:
        raise ConfigError("metrics.offline_cache: must not be negative")


_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"]+$")  # RFC 3986 §3.1 scheme, no spaces


def _validate_contact(contact: ContactConfig, where: str) -> None:
    """Every address is an absolute URI (XEP-0157 §3 sends URIs: mailto:, xmpp:, https:);
    an xmpp: URI must name a valid JID (RFC 5122 §2)."""
    for kind in CONTACT_KINDS:
        for i, uri in enumerate(getattr(contact, kind)):
            at = f"{where}.{kind}[{i}]"
            if len(uri) > 1024 or not _URI.match(uri):
                raise ConfigError(f"{at}: {uri!r} is not a URI such as "
                                  "\"mailto:abuse@example.org\" or \"xmpp:admin@example.org\"")
            scheme, _, rest = uri.partition(":")
            if scheme.lower() == "xmpp":
                if rest.startswith("//"):  # xmpp://authority/target: the target counts
                    rest = rest[2:].partition("/")[2]
                address = rest.split("?", 1)[0].split("#", 1)[0]
                try:
                    JID.parse(urllib.parse.unquote(address))
                except JIDError as exc:
                    raise ConfigError(f"{at}: {uri!r} does not name a JID: {exc}") from None
            elif scheme.lower() == "mailto" and "@" not in rest:
                raise ConfigError(f"{at}: {uri!r} has no mail address")


def _admin_jid(value: str, where: str) -> str:
    try:
        jid = JID.parse(value)
    except JIDError as exc:
        raise ConfigError(f"{where}: {value!r} is not a JID: {exc}") from None
    if jid.resource:
        raise ConfigError(f"{where}: {value!r} has a resource (give the bare JID)")
    return jid.bare_str


def _validate_federation(fed: FederationConfig) -> None:
    if fed.connect_timeout <= 0:
        raise ConfigError("federation.connect_timeout: must be positive")
    if fed.idle_timeout <= 0:
        raise ConfigError("federation.idle_timeout: must be positive")
    if fed.max_queue < 1:
        raise ConfigError("federation.max_queue: must be at least 1")
    if not fed.dialback and not fed.require_valid_certificates:
        raise ConfigError("federation.dialback: without dialback, require_valid_certificates "
                          "must be true (certificates are then the only proof of identity)")
    domains: dict[str, DomainPolicy] = {}
    for name, policy in fed.domains.items():
        try:
            dom = prepare_domain(name)
        except JIDError as exc:
            raise ConfigError(f"federation.domains.{name}: not a valid domain: {exc}") from None
        if policy.connect:
            from federation.resolve import parse_connect

            try:
                parse_connect(policy.connect)
            except ValueError as exc:
                raise ConfigError(f"federation.domains.{name}.connect: {exc}") from None
        domains[dom] = policy
    object.__setattr__(fed, "domains", domains)


def build(cls: type[T], data: Any, path: str) -> T:
    """Build dataclass ``cls`` from TOML data, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '<root>'}: expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            raise ConfigError(f"{where}: unknown key")
        kwargs[key] = _convert(hints[key], value, where)
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        where = f"{path}.{missing[0]}" if path else missing[0]
        raise ConfigError(f"{where}: required key missing")
    return cls(**kwargs)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value")
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            raise ConfigError(f"{where}: must be one of {choices}, not {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        (item,) = get_args(tp)
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table")
        _, vt = get_args(tp)
        return {k: _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)  # type: ignore[arg-type]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, not {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, not {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, not {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, not {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported option type {tp!r}")
