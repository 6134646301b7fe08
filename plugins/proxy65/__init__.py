"""XEP-0065 SOCKS5 Bytestreams proxy: a service at proxy.<domain> relaying file transfers
(and any other bytestream) between two parties that cannot connect to each other directly.

The XMPP side (service.py) answers disco (identity proxy/bytestreams), tells where to connect
(``<streamhost jid host port/>``, §4.4) and activates streams (§4.9); the SOCKS5 side
(socks5.py) is the server's ``type = "socks5"`` listener, shared by every host that runs the
plugin; an activated stream (relay.py) copies bytes both ways within a rate, a size and a
duration limit.

Who may use it: with ``acl`` empty, the users of this server's hosts, or anyone with
``open_access`` (a remote server's user could then relay through us); with ``acl`` set, only
the JIDs and domains it lists, as Prosody's mod_proxy65 does with ``proxy65_acl``. Others get
``forbidden`` (§4.4). Without a socks5 listener the service is not offered at all.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import cast

from plugins.disco import Disco
from plugins.proxy65.service import ProxyService
from plugins.proxy65.socks5 import Limits, Socks5Relay
from xmppd.config import ConfigError
from xmppd.errors import StanzaError
from xmppd.jid import JID, JIDError, prepare_domain
from xmppd.plugin import Plugin


@dataclass(frozen=True)
class Options:
    service: str = ""  # the service domain; empty: proxy.<domain>
    name: str = "SOCKS5 Bytestreams Service"  # its name in service discovery
    host: str = ""  # address clients connect to; empty: the listener's, if not a wildcard,
    # else the domain
    port: int = 0  # port clients connect to; 0: the socks5 listener's
    acl: list[str] = field(default_factory=list)  # JIDs/domains allowed; empty: local users
    open_access: bool = False  # with acl empty: anyone, remote users included
    rate: int = 10485760  # bytes per second each way per stream; 0: no limit
    max_bytes: int = 1073741824  # bytes one stream may carry; 0: no limit
    max_duration: float = 7200.0  # seconds one stream may last; 0: no limit
    max_streams_per_user: int = 10  # active streams one requester may have
    handshake_timeout: float = 60.0  # seconds from connecting to activation
    max_pending: int = 1000  # connections waiting for activation, all hosts together


class Proxy65(Plugin):
    name = "proxy65"
    specs = ("XEP-0065 1.7 (SOCKS5 bytestreams proxy, TCP)", "RFC 1928 (SOCKS5, CONNECT)")
    depends = ("disco",)
    Options = Options

    def setup(self) -> None:
        self.opts = opts = cast(Options, self.options)
        _validate(opts)
        try:
            self.service_domain = prepare_domain(opts.service or f"proxy.{self.host.domain}")
        except JIDError as exc:
            raise ConfigError(f"plugins.proxy65.service: not a valid domain: {exc}") from None
        limits = Limits(opts.handshake_timeout, opts.max_pending)
        self.relay: Socks5Relay = self.host.listener_factory(
            "socks5", lambda: Socks5Relay(self.host.clock, limits))
        self.relay.limits.handshake_timeout = max(self.relay.limits.handshake_timeout,
                                                  opts.handshake_timeout)
        self.relay.limits.max_pending = max(self.relay.limits.max_pending, opts.max_pending)
        self.offered = self.host.has_listener("socks5")
        if not self.offered:
            self.log.info("proxy65: no socks5 listener configured, {domain} not offered",
                          domain=self.service_domain)
            return
        self.host.add_route(self.service_domain, ProxyService(self, self.service_domain))
        self.host.require(Disco).add_item(self.service_domain, opts.name)

    def teardown(self) -> None:
        if self.offered:
            self.host.require(Disco).remove_item(self.service_domain)

    def authorise(self, requester: JID) -> None:
        """Raise forbidden unless ``requester`` may use the proxy (module docstring)."""
        if self.opts.acl:
            if any(_acl_match(entry, requester) for entry in self.opts.acl):
                return
        elif self.opts.open_access or self.host.is_local(requester.domain):
            return
        raise StanzaError("forbidden", text="you may not use this proxy")

    def address(self) -> tuple[str, int] | None:
        """(host, port) clients are told to connect to; None if nothing listens."""
        bound = self.host.listener_ports("socks5")
        if not bound:
            return None
        address, port = bound[0]
        host = self.opts.host
        if not host:
            wildcard = ipaddress.ip_address(address).is_unspecified if address else True
            host = self.host.domain if wildcard else address
        return host, self.opts.port or port


def _acl_match(entry: str, jid: JID) -> bool:
    """An acl entry names a domain (all its users), a bare JID or a full JID."""
    try:
        want = JID.parse(entry)
    except JIDError:
        return False
    if want.domain != jid.domain:
        return False
    if not want.local:
        return True
    if want.local != jid.local:
        return False
    return not want.resource or want.resource == jid.resource


def _validate(o: Options) -> None:
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"plugins.proxy65.{key}: {why}")

    for i, entry in enumerate(o.acl):
        try:
            JID.parse(entry)
        except JIDError as exc:
            raise bad(f"acl[{i}]", f"{entry!r} is not a JID or domain: {exc}") from None
    if not 0 <= o.port <= 65535:
        raise bad("port", "out of range")
    for key in ("rate", "max_bytes", "max_duration", "max_streams_per_user"):
        if getattr(o, key) < 0:
            raise bad(key, "must not be negative (0: no limit)")
    if o.rate and o.rate < 1024:
        raise bad("rate", "must be 0 (no limit) or at least 1024 bytes per second")
    if o.handshake_timeout <= 0:
        raise bad("handshake_timeout", "must be positive")
    if o.max_pending < 2:
        raise bad("max_pending", "must be at least 2")
