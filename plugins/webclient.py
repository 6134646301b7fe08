"""The Converse.js web client at /chat/, pre-configured for this server's WebSocket, or for
its BOSH endpoint (XEP-0206) with /chat/?transport=bosh (networks that let only plain
HTTP requests through).

The client comes from the npm package pinned in web/package.json and web/package-lock.json;
nothing of it is committed. When its files are missing at start and ``npm`` is on the PATH,
the server runs ``npm ci`` in that folder itself, in the background, logging what it does
(the README's one command then gives a working /chat/ on a machine with npm); meanwhile,
or without npm, /chat/ says what is going on and how to install the client by hand. The
server never depends on it: a failed or impossible install is logged and nothing else.

OMEMO (XEP-0384) is available by default: at login the client creates its keys in the
browser and publishes its device list and key bundle through PEP (a bundle is several KB,
which is why the WebSocket must take frames well over 8 KiB); each chat has a padlock to
switch encryption on. ``omemo = "default"`` encrypts every chat whose peer has OMEMO
devices from the start; ``"off"`` removes OMEMO from the client. "available" is the
default because the keys live in that browser's storage only: with encryption on by
default, history fetched on another browser or after clearing site data is unreadable,
which surprises users who did not choose encryption themselves.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from twisted.internet import protocol
from twisted.internet.interfaces import IReactorProcess
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.static import File

from xmppd.plugin import Plugin

DEFAULT_WEB = Path(__file__).resolve().parent.parent / "web"
DIST = Path("node_modules") / "converse.js" / "dist"
DEFAULT_DIST = DEFAULT_WEB / DIST
NPM_ARGS = ("ci", "--no-audit", "--no-fund", "--loglevel=error")


@dataclass(frozen=True)
class Options:
    path: str = "chat"  # URL path of the client
    dist_dir: str = ""  # converse.js dist folder; empty: <web_dir>/node_modules/converse.js/dist
    view_mode: str = "fullscreen"  # converse.js view_mode: fullscreen, overlayed, embedded
    omemo: Literal["off", "available", "default"] = "available"  # see the module docstring
    web_dir: str = ""  # the npm folder (package.json); empty: web/ of the xmppd checkout
    install: bool = True  # run `npm ci` there at start when the client files are missing


# Converse.js 14.0.0 accepts a contact request with ``contact.authorize().subscribe()``, but
# the method that asks for the reciprocal subscription is ``subscribeToPresence``; ``subscribe``
# is the model's change-listener API, which does nothing when called without arguments. So the
# request is approved, no subscription request goes back, and the contact stays one-way ("from")
# although the dialog reports success. This plugin makes the argument-less call (the dialog's,
# and nothing else calls it so) ask for the subscription.
#
# Also: after it has resumed a session once (XEP-0198), Converse.js 14 never tries to resume
# again in that tab, and the fresh sessions it opens instead skip the roster request while
# its cache is marked current (src/headless/plugins/smacks/utils.js onWillReconnect,
# plugins/roster/contacts.js fetchRosterContacts). Without the request the server sends it
# no roster pushes (RFC 6121 §2.1.6: interested resources only), so subscription changes
# never showed. The plugin asks for the roster on every reconnection that did not resume.
COMPAT_PLUGIN = """converse.plugins.add('xmppd-compat', {
  dependencies: ['converse-roster'],
  initialize() {
    const _converse = this._converse;
    const api = _converse.api;
    api.listen.on('reconnected', () => {
      if (!api.connection.get().hasResumed()) _converse.state.roster?.fetchFromServer();
    });
    const proto = _converse.exports.RosterContact?.prototype;
    if (!proto || typeof proto.subscribeToPresence !== 'function') return;
    const listen = proto.subscribe;
    proto.subscribe = function (...args) {
      return args.length ? listen.apply(this, args) : this.subscribeToPresence();
    };
  },
});"""



class NpmInstall(protocol.ProcessProtocol):
    """One ``npm ci`` run; keeps the end of its error output for the log."""

    def __init__(self, plugin: WebClient, web: Path, dist: Path) -> None:
        self.plugin, self.web, self.dist = plugin, web, dist
        self.err = b""
        self.running = True

    def errReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        self.err = (self.err + data)[-2000:]

    def processEnded(self, reason: Failure) -> None:  # noqa: N802 (Twisted API)
        self.running = False
        code = getattr(reason.value, "exitCode", None)
        log = self.plugin.log
        if code == 0 and (self.dist / "converse.min.js").exists():
            log.info("web client installed in {dist}; /chat/ serves it", dist=str(self.dist))
            return
        log.warn("installing the web client failed (npm ci in {web} exited with {code}): "
                 "{err}; /chat/ stays unavailable until `npm ci --prefix {web}` succeeds",
                 web=str(self.web), code=code,
                 err=self.err.decode(errors="replace").strip() or "no error output")

    def stop(self) -> None:
        if self.running and self.transport is not None:
            self.transport.signalProcess("TERM")


class ClientPage(Resource):
    isLeaf = False  # noqa: N815 (twisted.web API)

    def __init__(self, plugin: WebClient, dist: Path) -> None:
        super().__init__()
        self.plugin = plugin
        self.dist = dist

    def getChild(self, path: bytes, request: Request) -> Resource:  # noqa: N802
        if path in (b"", b"index.html"):
            return self
        if path == b"dist" and self.dist.is_dir():  # also once an install has finished
            if b"dist" not in self.children:
                self.putChild(b"dist", File(str(self.dist)))
            return self.children[b"dist"]
        return super().getChild(path, request)

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        if not request.path.endswith(b"/") and request.path.rstrip(b"/").endswith(
                self.plugin.options.path.encode()):
            request.redirect(request.path + b"/")
            return b""
        if not (self.dist / "converse.min.js").exists():
            request.setResponseCode(503)
            installer = self.plugin.installer
            if installer is not None and installer.running:
                request.setHeader(b"retry-after", b"30")
                return (b"<!doctype html><title>xmppd</title><p>The web client is being "
                        b"installed (<code>npm ci</code>); reload this page in a minute.</p>")
            return (b"<!doctype html><title>xmppd</title><p>The web client is not installed. "
                    b"Run <code>npm ci --prefix web</code> in the xmppd folder.</p>")
        return self.plugin.page(request).encode()


class WebClient(Plugin):
    name = "webclient"
    specs = ("Converse.js 14 (bundled web client)",)
    Options = Options

    def setup(self) -> None:
        self.installer: NpmInstall | None = None
        web = Path(self.options.web_dir) if self.options.web_dir else DEFAULT_WEB
        dist = Path(self.options.dist_dir) if self.options.dist_dir else web / DIST
        if self.options.path in self.host.mounted_paths():
            return  # another host of this server serves it (and installs it)
        self.host.mount(self.options.path, ClientPage(self, dist))
        if (dist / "converse.min.js").exists():
            return
        if self.options.install and not self.options.dist_dir:
            self.installer = self._install(web, dist)
        if self.installer is None:
            self.log.warn("web client files not found in {dist}; /chat/ shows how to install "
                          "them (npm ci --prefix web)", dist=str(dist))

    def _install(self, web: Path, dist: Path) -> NpmInstall | None:
        """Start ``npm ci`` in ``web`` if that can be done; None (and why, logged) if not."""
        reactor: Any = self.host.clock
        npm = shutil.which("npm")
        if not IReactorProcess.providedBy(reactor):
            return None
        if not (web / "package.json").exists() or not (web / "package-lock.json").exists():
            self.log.warn("no web/package.json and package-lock.json in {web}: the web client "
                          "cannot be installed from here", web=str(web))
            return None
        if npm is None:
            self.log.warn("the web client is not installed and npm is not on the PATH: /chat/ "
                          "explains how to install it (Node.js and npm, then npm ci --prefix "
                          "{web})", web=str(web))
            return None
        self.log.info("installing the web client: {npm} ci in {web} (first start; /chat/ "
                      "answers once it is done)", npm=npm, web=str(web))
        proc = NpmInstall(self, web, dist)
        try:
            reactor.spawnProcess(proc, npm, [npm, *NPM_ARGS], env=dict(os.environ),
                                 path=str(web))
        except OSError as exc:
            self.log.warn("cannot run {npm}: {err}", npm=npm, err=str(exc))
            return None
        return proc

    def teardown(self) -> None:
        if self.installer is not None:
            self.installer.stop()  # an interrupted install is redone at the next start

    def page(self, request: Request) -> str:
        host = (request.getHeader("host") or "").split(":")[0]
        domain = host if self.host.is_local(host) else self.host.domain
        bosh = (request.args or {}).get(b"transport") == [b"bosh"]
        transport = ({"bosh_service_url": self.host.bosh_url(request)} if bosh
                     else {"websocket_url": self.host.websocket_url(request)})
        settings: dict[str, object] = {
            **transport,
            "view_mode": self.options.view_mode,
            "discover_connection_methods": False,
            "default_domain": domain,
            "domain_placeholder": domain,
            "assets_path": "dist/",
            "allow_registration": False,
            "show_client_info": False,
            "play_sounds": False,
            "persistent_store": "IndexedDB",
            "whitelisted_plugins": ["xmppd-compat"],
        }
        if self.options.omemo == "off":
            settings["blacklisted_plugins"] = ["converse-omemo"]
        else:
            settings["omemo_default"] = self.options.omemo == "default"
        from plugins.muc import Muc  # only when MUC is enabled

        muc = self.host.optional(Muc)
        service = muc.service.domain if muc is not None else None
        if service is not None and domain == self.host.domain:
            settings["muc_domain"] = service  # users type a room's name, not its address
            # What a user types to find a room goes to this service, not to Converse.js's
            # default, a third-party directory (api@search.jabber.network) reached through
            # federation. The room service does not implement that search, so the list of
            # suggestions stays empty; an empty setting would be better, but Converse.js 14
            # then drops the room name field from the "Add groupchat" dialog.
            settings["muc_search_service"] = service
        return (
            "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>Chat on {domain}</title>"
            "<link rel='stylesheet' type='text/css' media='screen' href='dist/converse.min.css'>"
            "<link rel='icon' href='dist/images/favicon.ico'>"
            # converse.js 14 is an ES module bundle that defines window.converse; module
            # scripts run in document order, so the second one sees it.
            "<script type='module' src='dist/converse.min.js' charset='utf-8'></script></head>"
            "<body class='converse-fullscreen'><noscript>This chat needs JavaScript.</noscript>"
            f"<script type='module'>{COMPAT_PLUGIN}\n"
            f"converse.initialize({json.dumps(settings)});</script>"
            "</body></html>"
        )
