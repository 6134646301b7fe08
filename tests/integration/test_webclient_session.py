"""A whole Converse.js session in Chromium, driven like a user (issue 15).

Two users log in through /chat/ with OMEMO on (the page is served with ``omemo =
"default"``): each browser publishes its OMEMO device list and key bundle (the legacy
bundle is a WebSocket frame of more than 8 KiB, which once got the client disconnected at
login) and the server stores and returns them. Alice adds Bob in the UI, Bob accepts, both
see a mutual ("both") subscription; they chat end-to-end encrypted both ways and talk in a
room. The connection stays up, one WebSocket each, with no <close/> or stream error for the
30 s after login. Then Alice's network dies mid-session: her link goes silent while Bob
writes to her and to the room, then her browser notices and reconnects. Converse resumes
the XEP-0198 session (<resume/> answered by <resumed/>), the server ends the stale
connection and sends again what went into the gap, and afterwards messages flow both ways
and a roster push (a rename from Alice's phone) still reaches the browser.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID

from tests.conftest import start_server
from tests.support.browser import (
    CHROMIUM,
    STEP,
    BrowserUser,
    Frame,
    launch_args,
    require_browser,
    send_text,
)
from tests.support.ca import CertAuthority
from tests.support.client import Client, connect, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

PUBSUB = "{http://jabber.org/protocol/pubsub}"
LEGACY = "eu.siacs.conversations.axolotl"  # OMEMO 0.3 (what Conversations speaks)
OMEMO2 = "urn:xmpp:omemo:2"
SM = "{urn:xmpp:sm:3}"
ROOM = "lobby@conference.localhost"
MS = STEP * 1000  # Playwright timeouts are in milliseconds
WINDOW = 30.0  # the issue: "its WebSocket frame log shows no reconnect for 30 s"


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    require_browser()
    yield from start_server(tmp_path_factory.mktemp("converse"), "sqlite", ca,
                            config={"plugins": {"webclient": {"omemo": "default"}}})


def chat(jid: str) -> str:
    return f"converse-chat[jid='{jid}']"


def muc(jid: str) -> str:
    return f"converse-muc[jid='{jid}']"


def published_node(f: Frame) -> str:
    if not f.sent or f.name != "iq":
        return ""
    publish = f.el.find(f"{PUBSUB}pubsub/{PUBSUB}publish")
    return publish.get("node", "") if publish is not None else ""


async def published(user: BrowserUser, node: str) -> Frame:
    """The page published to ``node`` (a prefix) and the server accepted it."""
    request = await user.log.wait(f"publishing {node}", lambda f: published_node(f).startswith(
        node))
    answer = await user.log.answer(request)
    assert answer.el.get("type") == "result", answer.text
    return request


def message_to(f: Frame, jid: str) -> bool:
    return f.sent and f.name == "message" and f.el.get("to", "").split("/")[0] == jid


def pushed(f: Frame, jid: str) -> dict[str, str]:
    """The item for ``jid`` in a roster push the page received (empty if none)."""
    if f.sent or f.name != "iq" or f.el.get("type") != "set":
        return {}
    for item in f.el.iter("{jabber:iq:roster}item"):
        if item.get("jid") == jid:
            return dict(item.attrib)
    return {}


def encrypted(f: Frame) -> bool:
    return any(child.tag in (f"{{{OMEMO2}}}encrypted", f"{{{LEGACY}}}encrypted")
               for child in f.el)


async def add_contact(page: Any, jid: str) -> None:
    await page.click("converse-dropdown.dropdown--contacts button")
    await page.click("a.add-contact")
    await page.fill("converse-add-contact-modal input[name=jid]", jid)
    await page.click("converse-add-contact-modal button[type=submit]")


async def accept_request(page: Any, jid: str) -> None:
    item = f"li.requesting-xmpp-contact:has(a[data-jid='{jid}'])"
    await page.wait_for_selector(item, timeout=MS)
    await page.click(f"{item} converse-dropdown button")
    await page.click(f"{item} a.accept-xmpp-request")
    await page.click("converse-accept-contact-request-modal button[type=submit]")


async def expect_subscription(page: Any, jid: str, text: str) -> None:
    """The contact's details dialog states the subscription in words."""
    from playwright.async_api import expect

    item = f"li.current-xmpp-contact:has(a[data-jid='{jid}'])"
    await page.click(f"{item} converse-dropdown button", timeout=MS)
    await page.click(f"{item} a.dropdown-item:has-text('Details')")
    dialog = page.locator("converse-user-details-modal")
    await expect(dialog).to_contain_text(text, timeout=MS)
    await dialog.locator(".modal-footer button[data-bs-dismiss=modal]").click()
    await expect(dialog.locator(".modal-dialog")).to_be_hidden(timeout=MS)


async def open_chat(page: Any, jid: str) -> None:
    await page.click(f"converse-roster a.open-chat[data-jid='{jid}']")
    await page.locator(f"{chat(jid)} textarea.chat-textarea").wait_for(timeout=MS)


async def open_room(page: Any, jid: str) -> None:
    await page.click(f"converse-rooms-list a.open-room[data-room-jid='{jid}']")
    await page.locator(f"{muc(jid)} textarea.chat-textarea").wait_for(timeout=MS)


async def encrypt(page: Any, jid: str) -> None:
    """Switch the chat's padlock on (it is already on when OMEMO was known at opening)."""
    button = page.locator(f"{chat(jid)} button.toggle-omemo[data-disabled='false']")
    await button.wait_for(timeout=MS)
    locked = page.locator(f"{chat(jid)} button.toggle-omemo converse-icon.fa-lock")
    if not await locked.count():
        await button.click()
    await locked.wait_for(timeout=MS)


async def join_room(page: Any, name: str, nick: str) -> None:
    await page.click("converse-rooms-list converse-dropdown button")
    await page.click("a.show-add-muc-modal")
    await page.fill("converse-add-muc-modal input[name=chatroom]", name)
    await page.fill("converse-add-muc-modal input[name=nickname]", nick)
    await page.click("converse-add-muc-modal input[name=join]")
    await page.locator(f"{muc(ROOM)} textarea.chat-textarea").wait_for(timeout=MS)


async def shows(page: Any, scope: str, text: str) -> None:
    from playwright.async_api import expect

    await expect(page.locator(scope).get_by_text(text).first).to_be_visible(timeout=MS)


async def fetch_items(client: Client, owner: str, node: str) -> ET.Element:
    iq = client.make_iq_get(ito=owner)
    pubsub = ET.SubElement(iq.xml, f"{PUBSUB}pubsub")
    ET.SubElement(pubsub, f"{PUBSUB}items", node=node)
    result = await iq.send(timeout=STEP)
    xml: ET.Element = result.xml
    return xml


async def omemo_at_login(user: BrowserUser, stranger: Client) -> None:
    """Device lists and bundles published (both OMEMO versions); the legacy bundle, the
    frame of more than 8 KiB, comes back from the server as it was published."""
    await published(user, f"{LEGACY}.devicelist")
    await published(user, f"{OMEMO2}:devices")
    await published(user, f"{OMEMO2}:bundles")
    bundle = await published(user, f"{LEGACY}.bundles:")
    assert len(bundle.text.encode()) > 8192, f"the bundle frame is {len(bundle.text)} bytes"
    sent = bundle.el.find(f".//{{{LEGACY}}}bundle")
    assert sent is not None
    stored = await fetch_items(stranger, user.jid, published_node(bundle))
    back = stored.find(f".//{{{LEGACY}}}bundle")
    assert back is not None, ET.tostring(stored)
    assert ET.tostring(back) == ET.tostring(sent)


def test_converse_session_omemo_contacts_room_and_resumption(srv: ServerProcess,
                                                            tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    a, apw = srv.new_user("alice")
    b, bpw = srv.new_user("bob")
    c, _ = srv.new_user("carol")
    url = f"https://localhost:{srv.https_port}/chat/"

    async def body() -> None:
        carol = await connect(srv, c + "/laptop")
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=launch_args(srv))
            alice, bob = BrowserUser(a, apw), BrowserUser(b, bpw)
            try:
                await alice.open(browser, url)
                await bob.open(browser, url)
                for user in (alice, bob):
                    await omemo_at_login(user, carol)

                # Contacts, made the way users make them.
                await add_contact(alice.page, b)
                await accept_request(bob.page, a)
                for me, other in ((alice, b), (bob, a)):
                    await me.log.wait(f"pushing {other} as 'both'", partial(
                        lambda o, f: pushed(f, o).get("subscription") == "both", other))
                    await expect_subscription(me.page, other,
                                              "Both of you receive presence updates")

                # End-to-end encrypted chat, both ways: Bob's client fetches Alice's bundle
                # from the server to encrypt to her device.
                await open_chat(bob.page, a)
                await encrypt(bob.page, a)
                await send_text(bob.page, chat(a), "Hi Alice, encrypted")
                fetch = await bob.log.wait("fetching Alice's bundle", lambda f: (
                    f.sent and f.el.get("to") == a and any(
                        (i.get("node") or "").startswith((f"{OMEMO2}:bundles",
                                                          f"{LEGACY}.bundles:"))
                        for i in f.el.iter(f"{PUBSUB}items"))))
                answer = await bob.log.answer(fetch)
                assert answer.el.get("type") == "result" and "<bundle" in answer.text
                await open_chat(alice.page, b)
                await shows(alice.page, chat(b), "Hi Alice, encrypted")
                await encrypt(alice.page, b)
                await send_text(alice.page, chat(b), "Hello Bob, encrypted too")
                await shows(bob.page, chat(a), "Hello Bob, encrypted too")
                for user, peer, text in ((bob, a, "Hi Alice"), (alice, b, "Hello Bob")):
                    out = [f for f in user.log.frames if message_to(f, peer)]
                    assert any(encrypted(f) for f in out)
                    assert not any(text in f.text for f in out), "plaintext on the wire"

                # A room.
                await join_room(alice.page, "lobby", "alice")
                await join_room(bob.page, "lobby", "bob")
                await send_text(alice.page, muc(ROOM), "Hello room")
                await shows(bob.page, muc(ROOM), "Hello room")
                await send_text(bob.page, muc(ROOM), "Hello from Bob in the room")
                await shows(alice.page, muc(ROOM), "Hello from Bob in the room")

                # The observation window: one WebSocket each, never closed, for
                # 30 s after login (most of it spent on the steps above).
                window_end = max(alice.logged_in, bob.logged_in) + WINDOW
                await asyncio.sleep(max(0.0, window_end - time.monotonic()))
                for user in (alice, bob):
                    assert user.sockets == 1, f"{user.jid} opened {user.sockets} WebSockets"
                    ended = [f.text for f in user.log.frames if f.name in ("close", "error")]
                    assert not ended, ended

                # Alice's network dies: her link goes silent while Bob writes to her and
                # to the room, then her browser notices and reconnects.
                enabled = next(f for f in alice.log.frames if f.name == "enabled")
                relay = alice.relays[0]
                relay.partition()
                cut = time.monotonic()
                await open_chat(bob.page, a)
                await send_text(bob.page, chat(a), "Sent while Alice was away")
                gap_chat = await bob.log.wait("Bob's message into the gap", lambda f: (
                    message_to(f, a) and encrypted(f) and f.el.find("{jabber:client}body")
                    is not None), since=cut)
                await open_room(bob.page, ROOM)
                await send_text(bob.page, muc(ROOM), "Room talk while Alice was away")
                gap_ids = [gap_chat.el.get("id", "")]
                gap_ids.append((await bob.log.wait("Bob's room message into the gap", lambda f: (
                    message_to(f, ROOM) and "Room talk while" in f.text), since=cut)
                ).el.get("id", ""))
                await relay.swallowed_all(gap_ids)
                await relay.drop()

                resume = await alice.log.wait("<resume/>", lambda f: f.sent and f.socket == 1
                                              and f.name == "resume")
                assert resume.el.get("previd") == enabled.el.get("id")
                resumed = await alice.log.wait("<resumed/>", lambda f: not f.sent
                                               and f.socket == 1 and f.name in (
                                                   "resumed", "failed"))
                assert resumed.name == "resumed", resumed.text
                assert not any(f.socket == 1 and f.sent and "urn:ietf:params:xml:ns:xmpp-bind"
                               in f.text for f in alice.log.frames), "bound a new resource"
                # XEP-0198 §5: the stale stream is terminated.
                await asyncio.wait_for(relay.server_closed.wait(), STEP)
                # What went into the gap is sent again on the resumed stream.
                for gap_id in gap_ids:
                    await alice.log.wait(f"resent {gap_id}", partial(
                        lambda i, f: not f.sent and f.socket == 1 and f.name == "message"
                        and f.el.get("id") == i, gap_id))
                await open_room(alice.page, ROOM)
                await shows(alice.page, muc(ROOM), "Room talk while Alice was away")
                await open_chat(alice.page, b)
                await shows(alice.page, chat(b), "Sent while Alice was away")

                # The session goes on: messages both ways, and a roster push from
                # Alice's phone (she renames Bob there) shows in her browser.
                await send_text(alice.page, chat(b), "Back again")
                await open_chat(bob.page, a)
                await shows(bob.page, chat(a), "Back again")
                await send_text(bob.page, chat(a), "Welcome back")
                await shows(alice.page, chat(b), "Welcome back")
                phone = await connect(srv, a + "/phone", presence=False)
                await phone.update_roster(JID(b), name="Bob at work")  # type: ignore[misc]
                await alice.log.wait("the rename pushed", lambda f: (
                    f.socket == 1 and pushed(f, b).get("name") == "Bob at work"))
                await shows(alice.page, "converse-roster", "Bob at work")
                await phone.close()
                assert alice.sockets == 2 and bob.sockets == 1

                largest = max(alice.log.frames + bob.log.frames, key=lambda f: len(f.text))
                print(f"largest frame: {len(largest.text.encode())} bytes "
                      f"({'sent' if largest.sent else 'received'}); "
                      f"alice {len(alice.log.frames)} frames, bob {len(bob.log.frames)}")
            finally:
                await browser.close()
                await carol.close()
                for user, name in ((alice, "alice"), (bob, "bob")):  # the evidence, if it failed
                    user.log.dump(tmp_path / f"{name}.frames")

    run(body(), timeout=300)
