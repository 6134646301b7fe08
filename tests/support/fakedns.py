"""A tiny DNS server for interop tests: peers that resolve for themselves (Prosody via
libunbound, ejabberd via its inetrc) find our test servers through it."""

from __future__ import annotations

import socket
import threading

from twisted.names import dns


class FakeDNS:
    """Answers SRV/A queries for the given names from a thread; NXDOMAIN for the rest."""

    def __init__(self, srv: dict[str, tuple[str, int]], a: dict[str, str]) -> None:
        self.srv, self.a = srv, a
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self._answer(data), addr)
            except Exception:  # a malformed query: no answer, like a real server might
                continue

    def _answer(self, data: bytes) -> bytes:
        query = dns.Message()
        query.fromStr(data)
        reply = dns.Message(id=query.id, answer=1, opCode=query.opCode, recDes=query.recDes,
                            recAv=1, auth=1)
        reply.queries = query.queries
        for q in query.queries:
            name = q.name.name.decode().lower().rstrip(".")
            if q.type == dns.SRV and name in self.srv:
                target, port = self.srv[name]
                reply.answers.append(dns.RRHeader(
                    q.name.name, dns.SRV, ttl=5,
                    payload=dns.Record_SRV(0, 0, port, target, ttl=5)))
            elif q.type == dns.A and name in self.a:
                reply.answers.append(dns.RRHeader(q.name.name, dns.A, ttl=5,
                                                  payload=dns.Record_A(self.a[name], ttl=5)))
            elif name not in self.a and not name.endswith(tuple(self.a)):
                reply.rCode = dns.ENAME
        return reply.toStr()

    def close(self) -> None:
        self.stop = True
        self.thread.join(2)
        self.sock.close()
