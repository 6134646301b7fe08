"""XEP-0363 HTTP File Upload: a service at upload.<domain> that hands out upload slots, and
the HTTP resource that takes the files and serves them.

The service is a route target (service.py) listed in the domain's disco#items; the files
are served by a resource on the server's HTTP(S) listeners (http.py) at
``/<service domain>/<token>/<file name>`` - one path segment per service, so several
virtual hosts never share one. URLs start with ``base_url``, else ``web.public_url``, else
``https://<domain>:<https listener port>``.

Limits: ``max_file_size`` per file (advertised, §3; larger requests get file-too-large,
§5), ``quota`` bytes kept per user, ``daily_quota`` bytes requested per user in any 24
hours (both refused with resource-constraint and a retry stamp, §5), and ``expire_after``
seconds after which files are deleted (checked on every download, reclaimed every
``cleanup_interval``). Records live in ``storage.uploads``, so all of it survives restarts;
an account's uploads are deleted with the account.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from twisted.internet import threads
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall

from plugins.disco import Disco
from plugins.upload.files import FileStore, load_secret
from plugins.upload.http import UploadResource
from plugins.upload.service import UploadService
from plugins.upload.slots import url_path
from storage.uploads import DAY
from xmppd import hooks as H
from xmppd.config import ConfigError
from xmppd.jid import JIDError, prepare_domain
from xmppd.plugin import Plugin

T = TypeVar("T")
# RFC 6454 §6.1 serialised origin: scheme "://" host [":" port], lower case, no path
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[a-z0-9.\[\]:-]+$")
STUCK = 3600  # seconds after its URL expired that an unfinished upload is abandoned


@dataclass(frozen=True)
class Options:
    service: str = ""  # the service domain; empty: upload.<domain>
    name: str = "HTTP File Upload"  # its name in service discovery
    base_url: str = ""  # URL prefix of uploads; empty: web.public_url, else the https listener
    directory: str = ""  # where files are kept; empty: <data_dir>/upload
    secret: str = ""  # key that signs PUT URLs; empty: random, kept in data_dir
    max_file_size: int = 104857600  # bytes of one file (advertised; larger: file-too-large)
    quota: int = 1073741824  # bytes of files one user may keep; 0 = no limit
    daily_quota: int = 536870912  # bytes one user may upload in 24 hours; 0 = no limit
    expire_after: float = 2592000.0  # seconds a file is kept; 0 = forever
    slot_lifetime: float = 300.0  # seconds a PUT URL is valid
    cleanup_interval: float = 3600.0  # seconds between sweeps for expired files and slots
    # Web origins whose pages may upload and fetch files (CORS); ["*"]: any origin.
    cors_origins: list[str] = field(default_factory=lambda: ["*"])


class Upload(Plugin):
    name = "upload"
    specs = ("XEP-0363 1.1.0", "RFC 7233 (byte ranges of uploaded files)")
    depends = ("disco",)
    Options = Options

    async def setup(self) -> None:
        self.opts = cast(Options, self.options)
        _validate(self.opts)
        try:
            self.service_domain = prepare_domain(
                self.opts.service or f"upload.{self.host.domain}")
        except JIDError as exc:
            raise ConfigError(f"plugins.upload.service: not a valid domain: {exc}") from None
        self.loop: LoopingCall | None = None
        cfg = self.host.config
        data_dir = cfg.resolve(cfg.data_dir)
        root = cfg.resolve(self.opts.directory) if self.opts.directory else data_dir / "upload"
        self.files = FileStore(Path(root) / self.host.domain)
        self.key = await self.blocking(load_secret, self.opts.secret, data_dir)
        await self.blocking(self.files.prepare)
        # Nothing is being written at start: claimed but unfinished uploads are abandoned.
        await self.host.storage.uploads.purge_slots(self.host.domain, self.now(), 2 ** 62)
        self.service = UploadService(self, self.service_domain)
        self.host.add_route(self.service_domain, self.service)
        self.host.mount(self.service_domain, UploadResource(self))
        self.host.require(Disco).add_item(self.service_domain, self.opts.name)
        self.host.on(H.ACCOUNT_DELETED, self.account_deleted)
        self.loop = LoopingCall(self._sweep)
        self.loop.clock = self.host.clock
        self.loop.start(self.opts.cleanup_interval, now=True)

    def teardown(self) -> None:
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        items = self.host.require(Disco).items
        if (self.service_domain, self.opts.name) in items:
            items.remove((self.service_domain, self.opts.name))

    @property
    def base_url(self) -> str:
        """base_url, else web.public_url, else the bound https listener ('' if none)."""
        if self.opts.base_url:
            return self.opts.base_url.rstrip("/")
        return self.host.web_base_url()

    def url_for(self, token: str, filename: str) -> str:
        return self.base_url + url_path(self.service_domain, token, filename)

    def now(self) -> int:
        return int(self.host.clock.seconds())

    def blocking(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run disk work off the reactor thread (inline under a fake clock in unit tests)."""
        reactor = self.host.clock
        if hasattr(reactor, "getThreadPool"):
            return threads.deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)
        return succeed(fn(*args))

    # -- housekeeping -----------------------------------------------------------------------------
    def _sweep(self) -> Deferred[None]:
        d = Deferred.fromCoroutine(self.sweep()).addErrback(
            lambda f: self.log.failure("upload: cleanup failed", f))
        self.host.track(d)
        return d

    async def sweep(self) -> None:
        """Release unused slots, delete expired files and files whose record is gone (an
        account deleted from the command line), forget old records (daily quota)."""
        now, domain = self.now(), self.host.domain
        store = self.host.storage.uploads
        released = await store.purge_slots(domain, now, now - STUCK)
        lifetime = int(self.opts.expire_after)
        # stored + lifetime <= now: the moment downloads get 410 and quotas stop counting
        expired = await store.expire(domain, now - lifetime + 1 if lifetime else -1, now - DAY)
        if released or expired:
            await self.blocking(self.files.remove, released + expired)
        on_disk = await self.blocking(self.files.stored)
        known = await store.known(domain, [token for _, token in on_disk])
        orphans = [path for path, token in on_disk if token not in known]
        if orphans:
            await self.blocking(self.files.unlink, orphans)
        if expired or released or orphans:
            self.log.info("upload: {n} files expired, {m} unused slots released, {o} orphaned "
                          "files removed on {domain}", n=len(expired), m=len(released),
                          o=len(orphans), domain=domain)

    async def account_deleted(self, ev: H.AccountEvent) -> None:
        """XEP-0077 §3.2: every bit of the account goes, its files included (the folder goes
        as a whole: the records may have been deleted with the account already)."""
        await self.host.storage.uploads.delete_user(ev.jid.domain, ev.jid.local)
        await self.blocking(self.files.remove_user, ev.jid.local)


def _validate(o: Options) -> None:
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"plugins.upload.{key}: {why}")

    if o.max_file_size < 1:
        raise bad("max_file_size", "must be at least 1")
    if o.quota and o.quota < o.max_file_size:
        raise bad("quota", "must be 0 (no limit) or at least max_file_size")
    if o.daily_quota and o.daily_quota < o.max_file_size:
        raise bad("daily_quota", "must be 0 (no limit) or at least max_file_size")
    if o.quota < 0 or o.daily_quota < 0 or o.expire_after < 0:
        raise bad("quota", "limits must not be negative")
    if o.slot_lifetime < 1:
        raise bad("slot_lifetime", "must be at least 1 second")
    if o.cleanup_interval <= 0:
        raise bad("cleanup_interval", "must be positive")
    for i, origin in enumerate(o.cors_origins):
        if origin != "*" and not _ORIGIN.match(origin):
            raise bad(f"cors_origins[{i}]", f"{origin!r} is not \"*\" or an origin such as "
                      "\"https://chat.example.org\" (scheme, host, optional port, no path)")
    if "*" in o.cors_origins and len(o.cors_origins) > 1:
        raise bad("cors_origins", "\"*\" already allows every origin: list it alone")
    if o.base_url and not o.base_url.startswith(("https://", "http://")):
        raise bad("base_url", "must start with https:// (or http:// behind a TLS proxy)")
