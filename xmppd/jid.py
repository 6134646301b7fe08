"""JIDs per RFC 7622, prepared with PRECIS (precis-i18n) and IDNA2008 (idna).

A JID is parsed and enforced once and then cached: stanza routing prepares the
same few thousand addresses over and over, so the cache keeps PRECIS off the hot path.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Final

import idna
import precis_i18n

_USERNAME = precis_i18n.get_profile("UsernameCaseMapped")
_OPAQUE = precis_i18n.get_profile("OpaqueString")

# RFC 7622 §3.3.1: characters forbidden in a localpart on top of the PRECIS profile.
_LOCAL_FORBIDDEN: Final = frozenset("\"&'/:<>@")
_MAX_PART: Final = 1023
# Longest raw part that can still prepare to _MAX_PART octets or fewer. Preparation never
# turns more than four code points into one (no canonical decomposition is longer than
# four, e.g. U+1FAF; width, case and space mapping never shrink a string) and every code
# point takes at least one octet, so a longer input is refused before PRECIS runs:
# enforcing a profile costs ~3 us per character, and one stanza may carry 256 KiB of 'to'
# (0.7 s of CPU). Found by tests/fuzz.
_MAX_RAW_PART: Final = 4 * _MAX_PART


class JIDError(ValueError):
    """The string is not a valid JID (RFC 7622); maps to ``jid-malformed``."""


class JID:
    """An immutable, prepared JID. Compare and hash by its canonical string."""

    __slots__ = ("_str", "domain", "local", "resource")

    local: str
    domain: str
    resource: str

    def __init__(self, local: str, domain: str, resource: str = "") -> None:
        # Callers pass already-prepared parts; use JID.parse / JID.make for raw input.
        self.local = local
        self.domain = domain
        self.resource = resource
        s = f"{local}@{domain}" if local else domain
        self._str = f"{s}/{resource}" if resource else s

    @staticmethod
    def parse(value: str) -> JID:
        """Parse and prepare a JID string (RFC 7622 §3.1); raises JIDError."""
        return _parse_cached(value)

    @staticmethod
    def make(local: str | None, domain: str, resource: str | None = None) -> JID:
        """Build a JID from raw parts, preparing each one."""
        return JID(
            prepare_local(local) if local else "",
            prepare_domain(domain),
            prepare_resource(resource) if resource else "",
        )

    @property
    def bare(self) -> JID:
        if not self.resource:
            return self
        return JID(self.local, self.domain)

    @property
    def bare_str(self) -> str:
        return f"{self.local}@{self.domain}" if self.local else self.domain

    @property
    def is_bare(self) -> bool:
        return not self.resource

    def with_resource(self, resource: str) -> JID:
        return JID(self.local, self.domain, prepare_resource(resource))

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return f"JID({self._str!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JID) and other._str == self._str

    def __hash__(self) -> int:
        return hash(self._str)


def prepare_local(local: str) -> str:
    """RFC 7622 §3.3: UsernameCaseMapped plus the extra forbidden characters."""
    if len(local) > _MAX_RAW_PART:
        raise JIDError("localpart length out of range")
    try:
        out = _USERNAME.enforce(local)
    except UnicodeError as exc:
        raise JIDError(f"invalid localpart: {exc}") from None
    if not out or len(out.encode()) > _MAX_PART:
        raise JIDError("localpart length out of range")
    if _LOCAL_FORBIDDEN.intersection(out):
        raise JIDError("forbidden character in localpart")
    return out


def prepare_resource(resource: str) -> str:
    """RFC 7622 §3.4: OpaqueString profile."""
    if len(resource) > _MAX_RAW_PART:
        raise JIDError("resourcepart length out of range")
    try:
        out = _OPAQUE.enforce(resource)
    except UnicodeError as exc:
        raise JIDError(f"invalid resourcepart: {exc}") from None
    if not out or len(out.encode()) > _MAX_PART:
        raise JIDError("resourcepart length out of range")
    return out


@lru_cache(maxsize=4096)
def prepare_domain(domain: str) -> str:
    """RFC 7622 §3.2: IP literal, or IDNA2008 U-label form, lowercased, no final dot."""
    if domain.endswith("."):
        domain = domain[:-1]
    if not domain:
        raise JIDError("empty domainpart")
    if domain.startswith("[") and domain.endswith("]"):
        try:
            return "[" + str(ipaddress.IPv6Address(domain[1:-1])) + "]"
        except ValueError:
            raise JIDError("invalid IPv6 literal") from None
    try:
        ipaddress.IPv4Address(domain)
        return domain
    except ValueError:
        pass
    if domain.isascii():
        low = domain.lower()
        # Fast path for plain LDH names, the overwhelmingly common case.
        if all(label and _is_ldh(label) for label in low.split(".")) and len(low) <= _MAX_PART:
            return low
    try:
        out: str = idna.decode(idna.encode(domain, uts46=True))
    except (idna.IDNAError, UnicodeError) as exc:
        raise JIDError(f"invalid domainpart: {exc}") from None
    if len(out.encode()) > _MAX_PART:
        raise JIDError("domainpart too long")
    return out


def _is_ldh(label: str) -> bool:
    if len(label) > 63 or label[0] == "-" or label[-1] == "-":
        return False
    return all(c.isalnum() or c == "-" for c in label)


@lru_cache(maxsize=65536)
def _parse_cached(value: str) -> JID:
    if not value:
        raise JIDError("empty JID")
    slash = value.find("/")
    if slash >= 0:
        rest, resource = value[:slash], value[slash + 1 :]
        if not resource:
            raise JIDError("empty resourcepart")
    else:
        rest, resource = value, ""
    at = rest.find("@")
    if at >= 0:
        local, domain = rest[:at], rest[at + 1 :]
        if not local:
            raise JIDError("empty localpart")
    else:
        local, domain = "", rest
    return JID(
        prepare_local(local) if local else "",
        prepare_domain(domain),
        prepare_resource(resource) if resource else "",
    )
