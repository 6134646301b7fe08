"""What ``xmppd check`` verifies for federation: the DNS records and the certificate each
served domain needs so that other servers can find and trust it.

* DNS (RFC 6120 §3.2.1, XEP-0368): ``_xmpp-server._tcp.<domain>`` and/or
  ``_xmpps-server._tcp.<domain>`` SRV records, else an A/AAAA record for the domain itself
  (then peers use port 5269).
* Certificate (RFC 6120 §13.7.1.2, XEP-0178): trusted by ``federation.ca_file`` or the system
  store, naming the domain (DNS-ID or SRV-ID), usable for serverAuth. Without it, peers
  that require valid certificates refuse us and the others fall back to dialback.

Missing DNS records and unverifiable certificates are warnings (a private or test
deployment works without them); broken configuration is an error.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from pathlib import Path

from cryptography import x509
from twisted.names import dns

from federation.verify import names_domain, trust_store, verify_chain
from xmppd.config import ServerConfig
from xmppd.tls import find_cert

# RFC 6761 / RFC 2606 / RFC 6762 names that never federate on the public network.
_PRIVATE_SUFFIXES = (".test", ".example", ".invalid", ".localhost", ".local")


def _private(domain: str) -> bool:
    if domain == "localhost" or domain.endswith(_PRIVATE_SUFFIXES) or "." not in domain:
        return True
    try:
        ipaddress.ip_address(domain.strip("[]"))
        return True
    except ValueError:
        return False


def _nameserver() -> str:
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return parts[1]
    except OSError:
        pass
    return "127.0.0.1"


def lookup_srv(name: str, timeout: float = 3.0, server: str | None = None, port: int = 53
               ) -> list[tuple[int, int, int, str]] | None:
    """SRV records via one UDP query (None: the lookup itself failed)."""
    query = dns.Message(id=secrets.randbelow(65536), recDes=1)
    query.queries = [dns.Query(name, dns.SRV, dns.IN)]
    host = server or _nameserver()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(query.toStr(), (host, port))
            data, _ = sock.recvfrom(65535)
    except OSError:
        return None
    reply = dns.Message()
    try:
        reply.fromStr(data)
    except Exception:
        return None
    if reply.id != query.id or reply.rCode not in (dns.OK, dns.ENAME):
        return None
    out: list[tuple[int, int, int, str]] = []
    for rr in reply.answers:
        srv = rr.payload
        if rr.type == dns.SRV and isinstance(srv, dns.Record_SRV):
            out.append((srv.priority, srv.weight, srv.port,
                        srv.target.name.decode("ascii", "replace")))
    return out


def _has_address(domain: str) -> bool:
    try:
        return bool(socket.getaddrinfo(domain, 5269, proto=socket.IPPROTO_TCP))
    except (OSError, UnicodeError):
        return False


def check_dns(domain: str) -> list[str]:
    """Warnings about the records peers need to find ``domain``."""
    if _private(domain):
        return []
    name = domain.encode("idna").decode("ascii")
    found = {svc: lookup_srv(f"_{svc}._tcp.{name}") for svc in ("xmpp-server", "xmpps-server")}
    if all(v is None for v in found.values()):
        return [f"{domain}: DNS lookups failed; cannot tell whether other servers can find it"]
    records = [r for v in found.values() for r in v or []]
    if any(r[3] not in ("", ".") for r in records):
        return []
    if records:
        return [f"{domain}: the SRV records say federation is not offered (target '.')"]
    if _has_address(domain):
        return [f"{domain}: no _xmpp-server._tcp SRV record; peers will use {domain} port 5269"
                f" (publish _xmpp-server._tcp.{name}. SRV 0 5 5269 <host>. to be explicit)"]
    return [f"{domain}: neither _xmpp-server._tcp / _xmpps-server._tcp SRV records nor an "
            f"A/AAAA record: other servers cannot reach it (publish _xmpp-server._tcp.{name}."
            " SRV 0 5 5269 <host>.)"]


def check_certificate(cfg: ServerConfig, domain: str) -> list[str]:
    """Warnings about what peers will think of our certificate for ``domain``."""
    paths = find_cert(cfg, domain)
    if paths is None:
        return [f"{domain}: no certificate yet; a self-signed one will be generated and "
                "peers will only accept it through dialback"]
    try:
        chain = x509.load_pem_x509_certificates(paths.cert.read_bytes())
    except (OSError, ValueError):
        return []  # the general certificate check reports unreadable files
    ca = str(cfg.resolve(cfg.federation.ca_file)) if cfg.federation.ca_file else ""
    res = verify_chain(chain, trust_store(ca), "server")
    out = []
    if not res.trusted:
        out.append(f"{domain}: certificate {paths.cert} is not trusted by "
                   f"{ca or 'the system store'} ({res.error}): peers that require valid "
                   "certificates will refuse it; the others use dialback")
    if not names_domain(chain[0], domain):
        out.append(f"{domain}: certificate {paths.cert} names neither {domain} nor "
                   f"_xmpp-server.{domain}")
    return out


def check_federation(cfg: ServerConfig, resolve_dns: bool = True) -> tuple[list[str], list[str]]:
    """(errors, warnings) for the federation part of the configuration."""
    fed = cfg.federation
    if not fed.enabled:
        return [], []
    errors: list[str] = []
    warnings: list[str] = []
    if fed.ca_file:
        path = cfg.resolve(fed.ca_file)
        try:
            trust_store(str(path))
        except Exception as exc:
            errors.append(f"federation.ca_file: cannot load {path}: {exc}")
            return errors, warnings
    if not any(lc.type in ("s2s", "s2s_tls") for lc in cfg.listeners):
        warnings.append("federation: no s2s or s2s_tls listener; other servers cannot "
                        "connect to this one (outgoing federation only)")
    for domain in cfg.hosts:
        warnings.extend(check_certificate(cfg, domain))
        if resolve_dns:
            warnings.extend(check_dns(domain))
    return errors, warnings
