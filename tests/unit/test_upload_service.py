"""The upload plugin in an in-process server (task.Clock, in-memory SQLite): routing of the
service domain, who may upload, the HTTP resource driven directly, the clock-driven sweep
(expiry, unused slots, orphaned files), account deletion, unloading and option checks."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from plugins.upload import Upload
from plugins.upload.producer import FileProducer
from plugins.upload.slots import NS
from tests.support.inproc import FakeSession, add_user, make_server, resolve
from xmppd import stanza as st
from xmppd.config import ConfigError
from xmppd.errors import parse_error
from xmppd.plugin import unload_plugins
from xmppd.server import XmppServer
from xmppd.xmlparser import parse_fragment

PLUGINS = ["disco", "ping", "register", "upload"]


def server(tmp_path: Path, hosts: tuple[str, ...] = ("localhost",), **options: Any
           ) -> XmppServer:
    opts = {"directory": str(tmp_path / "files"), "secret": "test key",
            "base_url": "https://files.example", **options}
    return make_server(PLUGINS, hosts=hosts, options={"upload": opts})


def fired(d: Deferred[Any]) -> Any:
    """The result of a storage Deferred (inline storage fires at once)."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out
    return out[0]


def upload_plugin(srv: XmppServer, domain: str = "localhost") -> Upload:
    return cast(Upload, srv.hosts[domain].plugins["upload"])


def iq(session: FakeSession, to: str, xml: str, type_: str = "get") -> st.Element:
    el = st.iq(type_, "q1", to=to)
    st.append(el, parse_fragment(xml))
    session.stanza(el)
    replies = [s for s in session.take() if s.name == "iq"]
    assert len(replies) == 1, replies
    return replies[0]


def slot(session: FakeSession, name: str, size: int, ctype: str = "") -> tuple[str, str]:
    ct = f" content-type='{ctype}'" if ctype else ""
    reply = iq(session, "upload.localhost",
               f"<request xmlns='{NS}' filename='{name}' size='{size}'{ct}/>")
    assert reply.getAttribute("type") == "result", st.serialize(reply)
    el = st.child(reply, "slot", NS)
    assert el is not None
    put, get = st.child(el, "put", NS), st.child(el, "get", NS)
    assert put is not None and get is not None
    return put.getAttribute("url", ""), get.getAttribute("url", "")


class Request(DummyRequest):
    """DummyRequest with what the resource reads of a real twisted.web request."""

    def __init__(self, method: bytes, url: str, body: bytes = b"",
                 headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        segments = [unquote(p).encode() for p in parts.path.split("/")[2:]]
        super().__init__(segments)
        self.method = method
        self.uri = parts.path.encode()
        self.channel = object()
        self.content = io.BytesIO(body)
        for pair in filter(None, parts.query.split("&")):
            k, _, v = pair.partition("=")
            self.args.setdefault(k.encode(), []).append(v.encode())
        for name, value in (headers or {}).items():
            self.requestHeaders.addRawHeader(name, value)

    def header(self, name: str) -> str | None:
        values = self.responseHeaders.getRawHeaders(name)
        return None if not values else values[0]

    @property
    def body(self) -> bytes:
        return b"".join(self.written)


def http(srv: XmppServer, method: bytes, url: str, body: bytes = b"",
         headers: dict[str, str] | None = None) -> Request:
    req = Request(method, url, body, headers)
    resource = srv.web.root.children[urlsplit(url).path.split("/")[1].encode()]
    req.render(resource)
    assert req.finished, "the resource did not answer synchronously"
    return req


def put(srv: XmppServer, url: str, data: bytes, ctype: str = "") -> Request:
    headers = {"Content-Length": str(len(data))}
    if ctype:
        headers["Content-Type"] = ctype
    return http(srv, b"PUT", url, data, headers)


def test_service_domain_routing(tmp_path: Path) -> None:
    srv = server(tmp_path)
    add_user(srv, "alice@localhost")
    a = FakeSession(srv, "alice@localhost/x")
    a.take()
    items = iq(a, "localhost", "<query xmlns='http://jabber.org/protocol/disco#items'/>")
    assert ("upload.localhost", "HTTP File Upload") in [
        (i.getAttribute("jid"), i.getAttribute("name")) for i in items.elements()
        for i in i.elements()]
    pong = iq(a, "upload.localhost", "<ping xmlns='urn:xmpp:ping'/>")
    assert pong.getAttribute("type") == "result" and pong.getAttribute("from") == (
        "upload.localhost")
    for to, xml in (("upload.localhost", "<query xmlns='jabber:iq:version'/>"),
                    ("bob@upload.localhost", f"<request xmlns='{NS}' filename='a' size='1'/>"),
                    ("upload.localhost/res", "<ping xmlns='urn:xmpp:ping'/>")):
        err = iq(a, to, xml)
        assert parse_error(err) == ("cancel", "service-unavailable"), to
    err = iq(a, "upload.localhost",
             "<query xmlns='http://jabber.org/protocol/disco#info' node='x'/>")
    assert parse_error(err) == ("cancel", "item-not-found")
    msg = st.make("message", attrs={"to": "upload.localhost", "type": "chat"})
    a.stanza(msg)
    assert [parse_error(m) for m in a.take()] == [("cancel", "service-unavailable")]
    a.stanza(st.make("presence", attrs={"to": "upload.localhost"}))
    a.stanza(st.make("iq", attrs={"to": "upload.localhost", "type": "result", "id": "z"}))
    a.stanza(st.make("message", attrs={"to": "upload.localhost", "type": "error"}))
    assert a.take() == []  # nothing answers presence, results or errors


def test_only_local_users_get_slots_and_each_host_has_its_service(tmp_path: Path) -> None:
    srv = server(tmp_path, hosts=("localhost", "other.example"))
    add_user(srv, "carol@other.example")
    c = FakeSession(srv, "carol@other.example/x")
    c.take()
    err = iq(c, "upload.localhost", f"<request xmlns='{NS}' filename='a.txt' size='1'/>")
    assert parse_error(err) == ("cancel", "not-allowed")
    reply = iq(c, "upload.other.example", f"<request xmlns='{NS}' filename='a.txt' size='1'/>")
    el = st.child(reply, "slot", NS)
    put_el = st.child(el, "put", NS) if el is not None else None
    assert put_el is not None
    put_url = put_el.getAttribute("url", "")
    assert put_url.startswith("https://files.example/upload.other.example/")
    assert {b"upload.localhost", b"upload.other.example"} <= set(srv.web.root.children)


def test_upload_download_and_sweep_with_a_clock(tmp_path: Path) -> None:
    srv = server(tmp_path, expire_after=100.0, slot_lifetime=10.0, cleanup_interval=5.0)
    clock = srv.clock
    add_user(srv, "alice@localhost")
    a = FakeSession(srv, "alice@localhost/x")
    a.take()
    plugin = upload_plugin(srv)
    put_url, get_url = slot(a, "a.txt", 5, "text/plain")
    r = put(srv, put_url, b"hello", "text/plain")
    assert r.responseCode == 201
    r = http(srv, b"GET", get_url)
    assert (r.responseCode or 200, r.body) == (200, b"hello")
    assert r.header("content-type") == "text/plain"
    r = http(srv, b"GET", get_url, headers={"Range": "bytes=1-3"})
    assert (r.responseCode, r.body, r.header("content-range")) == (206, b"ell", "bytes 1-3/5")
    stored = plugin.files.stored()
    assert len(stored) == 1
    # an unused slot is released once its URL expired, giving back its bytes
    unused_put, _ = slot(a, "b.txt", 7)
    token = urlsplit(unused_put).path.split("/")[2]
    assert fired(srv.storage.uploads.get(token)) is not None
    clock.advance(11)
    clock.advance(5)
    assert fired(srv.storage.uploads.get(token)) is None
    assert put(srv, unused_put, b"1234567").responseCode == 403
    # a file with no record (its account deleted from the command line) is swept
    orphan = plugin.files.user_dir("ghost") / ("G" * 24)
    orphan.parent.mkdir()
    orphan.write_bytes(b"boo")
    clock.advance(5)
    assert not orphan.exists() and stored[0][0].exists()
    # files expire: refused at once, deleted by the next sweep
    clock.advance(100)
    assert http(srv, b"GET", get_url).responseCode == 410
    assert not stored[0][0].exists()


def test_account_deletion_removes_files(tmp_path: Path) -> None:
    srv = server(tmp_path)
    add_user(srv, "alice@localhost")
    add_user(srv, "bob@localhost")
    a = FakeSession(srv, "alice@localhost/x")
    b = FakeSession(srv, "bob@localhost/x")
    a.take()
    b.take()
    a_put, a_get = slot(a, "a.txt", 1)
    b_put, b_get = slot(b, "b.txt", 1)
    assert put(srv, a_put, b"a").responseCode == 201
    assert put(srv, b_put, b"b").responseCode == 201
    plugin = upload_plugin(srv)
    assert plugin.files.user_dir("alice").exists()
    from xmppd.jid import JID

    assert resolve(srv.delete_account(JID("alice", "localhost")))
    assert not plugin.files.user_dir("alice").exists()
    assert http(srv, b"GET", a_get).responseCode == 404
    assert http(srv, b"GET", b_get).body == b"b"


def test_unload_removes_route_mount_and_disco_item(tmp_path: Path) -> None:
    srv = server(tmp_path)
    assert "upload.localhost" in srv.router.routes
    disco = srv.hosts["localhost"].plugins["disco"]
    assert ("upload.localhost", "HTTP File Upload") in disco.items  # type: ignore[attr-defined]
    resolve(unload_plugins(srv.hosts["localhost"]))
    assert "upload.localhost" not in srv.router.routes
    assert b"upload.localhost" not in srv.web.root.children
    assert ("upload.localhost", "HTTP File Upload") not in disco.items  # type: ignore[attr-defined]


def test_urls_come_from_public_url_or_the_bound_listener(tmp_path: Path) -> None:
    from xmppd.config import from_dict
    from xmppd.plugin import load_plugins

    cfg = from_dict({"storage": {"url": "sqlite://"},
                     "listeners": [{"type": "c2s", "port": 5222},
                                   {"type": "https", "port": 0}],
                     "plugins": {"enabled": PLUGINS,
                                 "upload": {"directory": str(tmp_path), "secret": "k"}}})
    srv = XmppServer(cfg, Clock())
    srv.db.migrate()
    resolve(load_plugins(srv.hosts["localhost"], PLUGINS))
    assert "upload.localhost" in srv.router.routes
    add_user(srv, "alice@localhost")
    alice = FakeSession(srv, "alice@localhost/x")
    reply = iq(alice, "upload.localhost",
               f"<request xmlns='{NS}' filename='a.txt' size='1'/>")
    # not listening (port 0 is only known once bound): no URL to hand out, and it says so
    assert parse_error(reply) == ("cancel", "service-unavailable")
    cfg = from_dict({"storage": {"url": "sqlite://"},
                     "listeners": [{"type": "c2s", "port": 5222}],
                     "web": {"public_url": "https://chat.example.org/"},
                     "plugins": {"enabled": PLUGINS,
                                 "upload": {"directory": str(tmp_path), "secret": "k"}}})
    srv = XmppServer(cfg, Clock())
    srv.db.migrate()
    resolve(load_plugins(srv.hosts["localhost"], PLUGINS))
    plugin = upload_plugin(srv)
    assert plugin.url_for("T" * 24, "a b.txt") == (
        "https://chat.example.org/upload.localhost/" + "T" * 24 + "/a%20b.txt")


@pytest.mark.parametrize("options,message", [
    ({"max_file_size": 0}, "plugins.upload.max_file_size"),
    ({"max_file_size": 100, "quota": 10}, "plugins.upload.quota"),
    ({"max_file_size": 100, "daily_quota": 10}, "plugins.upload.daily_quota"),
    ({"expire_after": -1.0}, "plugins.upload.quota: limits"),
    ({"slot_lifetime": 0.0}, "plugins.upload.slot_lifetime"),
    ({"cleanup_interval": 0.0}, "plugins.upload.cleanup_interval"),
    ({"base_url": "ftp://x"}, "plugins.upload.base_url"),
    ({"service": "not a domain!"}, "plugins.upload.service"),
    ({"cors_origins": ["https://chat.example.org/path"]}, "plugins.upload.cors_origins[0]"),
    ({"cors_origins": ["chat.example.org"]}, "plugins.upload.cors_origins[0]"),
    ({"cors_origins": ["https://a.example", "*"]}, "plugins.upload.cors_origins: "),
])
def test_bad_options(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        server(tmp_path, **options)
    assert str(exc.value).startswith(message), str(exc.value)


class _Channel:
    lost = False

    def loseConnection(self) -> None:  # noqa: N802 (twisted API)
        self.lost = True


def test_producer_writes_slices_and_cuts_a_short_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"0123456789")
    req = Request(b"GET", "https://x/upload.localhost/T/n")
    with open(f, "rb") as fh:
        FileProducer(req, fh, [b"<", (2, 3), b"|", (8, 2), b">", (0, 0)]).start()
        assert fh.closed
    assert req.body == b"<234|89>" and req.finished
    big = tmp_path / "big"
    big.write_bytes(bytes(range(256)) * 1000)
    req = Request(b"GET", "https://x/upload.localhost/T/n")
    with open(big, "rb") as fh:
        FileProducer(req, fh, [(1000, 200_000)]).start()
    assert req.body == big.read_bytes()[1000:201_000] and len(req.written) > 1  # in chunks
    req = Request(b"GET", "https://x/upload.localhost/T/n")
    channel = _Channel()
    req.channel = channel
    with open(f, "rb") as fh:
        FileProducer(req, fh, [(5, 100)]).start()  # promised more than the file holds
        assert fh.closed
    assert req.body == b"56789" and channel.lost and not req.finished


def _retry(err: st.Element) -> str | None:
    e = st.child(err, "error", st.NS_CLIENT)
    r = st.child(e, "retry", NS) if e is not None else None
    return r.getAttribute("stamp") if r is not None else None


def test_quotas_as_uploads_and_slots_expire(tmp_path: Path) -> None:
    """XEP-0363 §5: the kept quota frees up when files expire or unused PUT URLs lapse, the
    daily one only after 24 hours; the retry stamp says when (on a Clock: no waiting)."""
    kb = 1000
    srv = server(tmp_path, max_file_size=kb, quota=2 * kb, daily_quota=3 * kb,
                 expire_after=100.0, slot_lifetime=10.0, cleanup_interval=5.0)
    clock = srv.clock
    clock.advance(1_700_000_000)
    t0 = clock.seconds()
    add_user(srv, "alice@localhost")
    a = FakeSession(srv, "alice@localhost/x")
    a.take()

    def request(name: str, size: int) -> st.Element:
        return iq(a, "upload.localhost",
                  f"<request xmlns='{NS}' filename='{name}' size='{size}'/>")

    # slots count at once; unused, they lapse with their URL and give their bytes back
    slot(a, "a.bin", kb)
    slot(a, "b.bin", kb)
    err = request("c.bin", 1)
    assert parse_error(err) == ("wait", "resource-constraint")
    assert _retry(err) is None  # nothing stored, so nothing will expire
    clock.advance(16)  # past the URL's lifetime, and a sweep ran
    a_put, _ = slot(a, "a.bin", kb)  # the daily quota counts uploads, not slots
    b_put, b_get = slot(a, "b.bin", kb)
    assert put(srv, a_put, b"a" * kb).responseCode == 201
    assert put(srv, b_put, b"b" * kb).responseCode == 201
    err = request("c.bin", 10)
    assert parse_error(err) == ("wait", "resource-constraint")
    assert _retry(err) == "2023-11-14T22:15:16Z"  # t0 + 16 + 100: when the first expires
    clock.advance(99)
    assert parse_error(request("c.bin", 10)) == ("wait", "resource-constraint")
    clock.advance(6)  # expired and swept: the kept quota is free
    assert http(srv, b"GET", b_get).responseCode == 410
    slot(a, "d.bin", kb)
    err = request("e.bin", 1)  # the daily quota (3 kB) counts what was uploaded today
    assert parse_error(err) == ("wait", "resource-constraint")
    assert "daily" in (st.child_text(st.child(err, "error", st.NS_CLIENT), "text",
                                      "urn:ietf:params:xml:ns:xmpp-stanzas") or "").lower()
    assert _retry(err) is not None
    assert t0 + 86400 <= _epoch(_retry(err)) <= t0 + 86400 + 30
    clock.advance(86400)
    slot(a, "e.bin", 1)


def _epoch(stamp: str | None) -> float:
    from xmppd.timeutil import parse_datetime

    assert stamp is not None
    return parse_datetime(stamp) / 1_000_000
