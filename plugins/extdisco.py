"""XEP-0215 External Service Discovery: the STUN and TURN servers (or any other external
service) configured for the domain, with short-term TURN credentials.

Credentials follow the TURN REST API shared-secret scheme (draft-uberti-behave-turn-rest-00
§2.2, what coturn's ``use-auth-secret`` / ``static-auth-secret`` checks): the username is
``<expiry unix time>:<bare JID>`` and the password is base64(HMAC-SHA1(secret, username)), so
the TURN server verifies them without talking to us; they stop working at the expiry, which
is also sent as the XEP-0215 ``expires`` attribute (§2). Services can instead carry fixed
credentials, or none (STUN).

Only users of this domain are told about services (§2 allows ``forbidden`` for others).
Services are configuration, so there are no pushes (§3.2 makes them optional).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import cast

from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.config import ConfigError
from xmppd.errors import StanzaError
from xmppd.iq import IqRequest
from xmppd.jid import JID
from xmppd.plugin import Plugin
from xmppd.timeutil import format_datetime

NS = "urn:xmpp:extdisco:2"
_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")  # XML Schema NCName (ASCII subset)
REST_TYPES = ("turn", "turns")  # service types the TURN REST API applies to


@dataclass(frozen=True)
class Service:
    """One [[plugins.extdisco.services]] entry (XEP-0215 §2 attributes)."""

    type: str  # registered service type: "stun", "turn", "stuns", "turns", ...
    host: str  # host name or IP address
    port: int = 3478  # 0: leave the attribute out
    transport: str = "udp"  # "udp" or "tcp"; "": leave it out
    name: str = ""  # human-readable label
    restricted: bool = False  # credentials are needed (clients ask for them, §3.3)
    username: str = ""  # fixed credentials, sent as they are ...
    password: str = ""
    secret: str = ""  # ... or a TURN REST shared secret for this service (else the global one)


@dataclass(frozen=True)
class Options:
    services: list[Service] = field(default_factory=list)  # empty: advertise the feature only
    secret: str = ""  # TURN REST API shared secret (coturn: static-auth-secret)
    credential_lifetime: float = 86400.0  # seconds TURN REST credentials stay valid


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    expires: int | None  # unix seconds, for the 'expires' attribute


def turn_rest_credentials(secret: str, user: str, expires: int) -> Credentials:
    """draft-uberti-behave-turn-rest-00 §2.2: username "expiry:user", password
    base64(HMAC-SHA1(shared secret, username))."""
    username = f"{expires}:{user}"
    mac = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return Credentials(username, base64.b64encode(mac).decode("ascii"), expires)


class ExtDisco(Plugin):
    name = "extdisco"
    specs = ("XEP-0215 1.0.0",)
    features = (NS,)
    Options = Options

    def setup(self) -> None:
        self.opts = cast(Options, self.options)
        _validate(self.opts)
        self.host.iq("get", NS, "services", self.services)
        self.host.iq("get", NS, "credentials", self.credentials)

    def _authorise(self, req: IqRequest) -> JID:
        user = req.from_
        if user is None or not user.local or user.domain != self.host.domain:
            raise StanzaError("forbidden", text=f"services are for users of {self.host.domain}")
        return user

    def _credentials(self, svc: Service, user: JID) -> Credentials | None:
        if svc.username or svc.password:
            return Credentials(svc.username, svc.password, None)
        secret = svc.secret or self.opts.secret
        if secret and svc.type in REST_TYPES:
            expires = int(self.host.clock.seconds() + self.opts.credential_lifetime)
            return turn_rest_credentials(secret, user.bare_str, expires)
        return None

    def _element(self, svc: Service, creds: Credentials | None) -> Element:
        attrs = {"type": svc.type, "host": svc.host}
        if svc.port:
            attrs["port"] = str(svc.port)
        if svc.transport:
            attrs["transport"] = svc.transport
        if svc.name:
            attrs["name"] = svc.name
        if svc.restricted:
            attrs["restricted"] = "true"
        if creds is not None:
            attrs["username"] = creds.username
            attrs["password"] = creds.password
            if creds.expires is not None:
                attrs["expires"] = format_datetime(creds.expires * 1_000_000)
        return st.make("service", NS, attrs)

    def services(self, req: IqRequest) -> Element:
        """§3.1 all services, §3.2 those of one type; credentials included where there are
        some, so a client needs no second round trip (§3.3 remains for refreshing them)."""
        user = self._authorise(req)
        wanted = req.payload.getAttribute("type")
        result = st.make("services", NS, {"type": wanted} if wanted else None)
        for svc in self.opts.services:
            if wanted is None or svc.type == wanted:
                st.append(result, self._element(svc, self._credentials(svc, user)))
        return result

    def credentials(self, req: IqRequest) -> Element:
        """§3.3: credentials for the services named by host and type (and port, when several
        share them); item-not-found when none is known or none has credentials."""
        user = self._authorise(req)
        asked = list(st.children(req.payload, "service", NS))
        if not asked:
            raise StanzaError("bad-request", text="name a <service/> with host and type")
        result = st.make("credentials", NS)
        for a in asked:
            host, type_, port = a.getAttribute("host"), a.getAttribute("type"), \
                a.getAttribute("port")
            if not host or not type_:
                raise StanzaError("bad-request", text="a service needs 'host' and 'type'")
            if port is not None and not (port.isascii() and port.isdigit()):
                raise StanzaError("bad-request", text="'port' must be a number")
            matches = [s for s in self.opts.services if s.host == host and s.type == type_
                       and (port is None or s.port == int(port))]
            if not matches:
                raise StanzaError("item-not-found", text=f"no {type_} service at {host}")
            found = False
            for svc in matches:
                creds = self._credentials(svc, user)
                if creds is not None:
                    st.append(result, self._element(svc, creds))
                    found = True
            if not found:
                raise StanzaError("item-not-found",
                                  text=f"the {type_} service at {host} needs no credentials")
        return result


def _validate(o: Options) -> None:
    if o.credential_lifetime < 60:
        raise ConfigError("plugins.extdisco.credential_lifetime: must be at least 60 seconds")
    for i, s in enumerate(o.services):
        where = f"plugins.extdisco.services[{i}]"
        if not _NCNAME.match(s.type):
            raise ConfigError(f"{where}.type: not a service type (e.g. stun, turn)")
        if not s.host or any(c.isspace() for c in s.host):
            raise ConfigError(f"{where}.host: a host name or IP address is required")
        if not 0 <= s.port <= 65535:
            raise ConfigError(f"{where}.port: out of range")
        if s.transport and not _NCNAME.match(s.transport):
            raise ConfigError(f"{where}.transport: e.g. udp or tcp")
        if bool(s.username) != bool(s.password):
            raise ConfigError(f"{where}: username and password go together")
