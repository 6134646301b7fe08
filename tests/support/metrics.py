"""Reading a running server's /metrics over real HTTP, from a chosen local address."""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str


def fetch(port: int, path: str = "/metrics", token: str | None = None,
          source: str | None = None, tls_ca: str | None = None,
          headers: dict[str, str] | None = None) -> Response:
    """GET ``path``; ``source`` picks the client address (any 127.x.y.z on loopback)."""
    local = (source, 0) if source else None
    conn: http.client.HTTPConnection
    if tls_ca is not None:
        ctx = ssl.create_default_context(cafile=tls_ca)
        ctx.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx,
                                           source_address=local)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=local)
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    try:
        conn.request("GET", path, headers=hdrs)
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                        resp.read().decode())
    finally:
        conn.close()


def parse(text: str) -> Samples:
    """Every sample keyed by (name, sorted labels)."""
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
