"""The web console in a real headless Chromium (Debian's), against a real twistd.

Playwright cannot download its own browser here, so the test drives
/usr/bin/chromium and is skipped (saying so) when that is not installed.
"""
from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import tempfile
import time
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from txpubsub.client import CommandError
from txpubsub.client.blocking import BlockingClient

from .test_twistd import twistd

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage"]
WAIT_MS = 15000
SCREENSHOTS = os.environ.get("TXPUBSUB_SCREENSHOTS")  # a folder to keep the page's pictures in


def start_server(tmp: str, line_port: int = 0, web_port: int = 0,
                 *options: str) -> tuple[subprocess.Popen[bytes], int, int]:
    """twistd with a line listener and a --ws listener on free ports (or these):
    (process, line, web); its admin socket is tmp/admin.sock."""
    proc = subprocess.Popen(
        [*twistd(), "-n", "--pidfile=", "txpubsub", "--admin", os.path.join(tmp, "admin.sock"),
         "--port", f"tcp:{line_port}:interface=127.0.0.1",
         "--ws", f"tcp:{web_port}:interface=127.0.0.1:backlog=64", *options],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp)
    assert proc.stdout is not None
    output = b""
    ports: dict[str, int] = {}
    deadline = time.monotonic() + 30
    while len(ports) < 2:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            raise AssertionError(f"the server did not start: {output.decode(errors='replace')}")
        if select.select([proc.stdout], [], [], left)[0]:
            output += os.read(proc.stdout.fileno(), 65536)
        for desc, port in re.findall(rb"txpubsub listening on (\S+) .*?port=(\d+)", output):
            ports["web" if b"backlog" in desc else "line"] = int(port)
    return proc, ports["line"], ports["web"]


class ConsoleBrowserTests(SynchronousTestCase):
    def setUp(self) -> None:
        if not os.path.exists(CHROMIUM):
            raise SkipTest(f"{CHROMIUM} is not installed (apt-get install chromium)")
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise SkipTest("playwright is not installed (pip install -e '.[test]')") from None
        tmp = self.tmp = tempfile.mkdtemp()
        self.proc, self.line_port, self.web_port = start_server(tmp)
        self.addCleanup(self.stop_server)
        self.playwright = sync_playwright().start()
        self.addCleanup(self.playwright.stop)
        self.browser = self.playwright.chromium.launch(executable_path=CHROMIUM,
                                                       args=CHROMIUM_ARGS, timeout=WAIT_MS)
        self.addCleanup(self.browser.close)

    def stop_server(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def admin(self, command: str) -> bytes:
        """One admin command and its reply."""
        with socket.socket(socket.AF_UNIX) as admin:
            admin.settimeout(10)
            admin.connect(os.path.join(self.tmp, "admin.sock"))
            admin.sendall(command.encode() + b"\r\n")
            reply = b""
            while b"\n" not in reply:
                chunk = admin.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return reply

    def line_client(self) -> BlockingClient:
        client = BlockingClient(f"tcp:127.0.0.1:{self.line_port}", timeout=10)
        self.addCleanup(client.close)
        return client

    def open_page(self, width: int = 1280, height: int = 800) -> Any:
        page = self.browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        self.addCleanup(lambda: self.assertEqual(errors, []))
        page.goto(f"http://127.0.0.1:{self.web_port}/")
        page.wait_for_selector("#status.up")
        return page

    def screenshot(self, page: Any, name: str) -> None:
        if SCREENSHOTS:
            os.makedirs(SCREENSHOTS, exist_ok=True)
            page.screenshot(path=os.path.join(SCREENSHOTS, name))

    def test_join_see_tcp_message_and_publish_to_tcp(self) -> None:
        """In the page: join as a name in a channel, see a message sent over TCP,
        and send one that a TCP subscriber receives."""
        tcp = self.line_client()
        tcp.command("NAME telnet")
        tcp.subscribe("lobby")
        page = self.open_page()
        page.fill("#name", "browser")
        page.fill("#pattern", "lobby")
        page.click("#join-form button[type=submit]")
        page.wait_for_selector(".chip:has-text('lobby')")
        page.wait_for_selector("#me:has-text('browser')")

        tcp.publish("lobby", "hello from telnet")
        row = page.wait_for_selector("#messages li:has-text('hello from telnet')")
        self.assertIn("telnet", row.inner_text())

        page.fill("#text", "hello from the browser")
        page.click("#pub-form button[type=submit]")
        got = next(m for m in tcp.messages(timeout=10) if m.sender != "telnet")
        self.assertEqual((got.channel, got.sender, got.payload),
                         ("lobby", "browser", b"hello from the browser"))

        # The side panels follow: both clients online, the channel's counters.
        page.wait_for_selector("#who li:has-text('telnet')")
        page.wait_for_selector("#who li:has-text('browser (you)')")
        row = page.wait_for_selector("#channels tr:has-text('lobby')")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#channels tr')].some("
            "r => r.innerText.replace(/\\s+/g, ' ').trim() === 'lobby 2 2 2')")
        self.screenshot(page, "console-laptop.png")

    def test_log_in_on_a_server_with_users(self) -> None:
        """On a server with --users the page asks for a user and password, says why
        a wrong one was refused, and once logged in works as that user."""
        from .test_auth import USERS

        users = os.path.join(self.tmp, "users.toml")
        with open(users, "w") as f:
            f.write(USERS)
        os.chmod(users, 0o600)
        self.stop_server()
        self.proc, self.line_port, self.web_port = start_server(self.tmp, 0, 0, "--users", users)
        page = self.open_page()
        page.wait_for_selector("#login-form:not([hidden])")
        self.screenshot(page, "console-login.png")
        page.fill("#user", "alice")
        page.fill("#password", "wrong")
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#error:has-text('wrong user or password')")
        page.fill("#password", "alice pw with spaces")
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#messages li:has-text('logged in as alice')")
        self.assertTrue(page.locator("#login-form").is_hidden())
        page.fill("#pattern", "chat.room")
        page.click("#join-form button[type=submit]")
        page.wait_for_selector(".chip:has-text('chat.room')")
        tcp = BlockingClient(f"tcp:127.0.0.1:{self.line_port}", timeout=10, user="bob",
                             password="bob-pw")
        self.addCleanup(tcp.close)
        with self.assertRaises(CommandError) as refused:
            tcp.publish("chat.room", "bob may not")
        self.assertEqual(refused.exception.code, "forbidden")
        self.admin("PUB chat.room hello alice")
        page.wait_for_selector("#messages li:has-text('hello alice')")

    def test_direct_messages_and_phone_width(self) -> None:
        """A direct message each way between the page and a TCP client, on a phone-sized page."""
        tcp = self.line_client()
        tcp.command("NAME telnet")
        page = self.open_page(390, 844)
        page.fill("#name", "phone")
        page.click("#join-form button[type=submit]")
        page.wait_for_selector("#me:has-text('phone')")
        tcp.publish("@phone", "psst")
        page.wait_for_selector("#messages li.dm:has-text('psst')")
        page.fill("#channel", "@telnet")
        page.fill("#text", "psst back")
        page.click("#pub-form button[type=submit]")
        got = next(tcp.messages(timeout=10))
        self.assertEqual((got.channel, got.sender, got.payload), ("@telnet", "phone", b"psst back"))
        width = page.evaluate("document.documentElement.scrollWidth")
        self.assertLessEqual(width, 390)  # nothing runs off the side
        self.screenshot(page, "console-phone.png")

    def test_drop_is_shown_and_resume_catches_up(self) -> None:
        """Kicked, the page says it is disconnected and why; what was published while
        it was away arrives once it is back (since=), and it says it is back."""
        tcp = self.line_client()
        page = self.open_page()
        page.fill("#name", "browser")
        page.fill("#pattern", "lobby")
        page.click("#join-form button[type=submit]")
        page.wait_for_selector(".chip:has-text('lobby')")
        tcp.publish("lobby", "before")
        page.wait_for_selector("#messages li:has-text('before')")

        # Hold the page's next connections until the test lets them through.
        held = {"on": True}

        def route(ws: Any) -> None:
            if held["on"]:
                ws.close()
            else:
                ws.connect_to_server()

        page.route_web_socket(re.compile(r".*/ws$"), route)
        self.assertIn(b"+OK", self.admin("KICK browser"))
        page.wait_for_selector("#status.down:has-text('kicked')")
        tcp.publish("lobby", "while you were away")
        held["on"] = False
        page.wait_for_selector("#status.up:has-text('connected again')", timeout=30000)
        page.wait_for_selector("#messages li:has-text('while you were away')")
        page.wait_for_selector("#messages li.note:has-text('caught up 1 missed')")
        page.wait_for_selector("#me:has-text('browser')")
        self.assertEqual(page.locator("#messages li:has-text('before')").count(), 1)
        self.screenshot(page, "console-resumed.png")

    def test_messages_after_a_server_restart_are_shown(self) -> None:
        """The server restarts without its history (a new epoch, ids from 1 again):
        the page comes back and shows the new messages, not only ones with ids
        above those it saw before the restart."""
        tcp = self.line_client()
        page = self.open_page()
        page.fill("#pattern", "lobby")
        page.click("#join-form button[type=submit]")
        page.wait_for_selector(".chip:has-text('lobby')")
        for i in range(3):
            tcp.publish("lobby", f"before {i}")
        page.wait_for_selector("#messages li:has-text('before 2')")

        self.stop_server()
        page.wait_for_selector("#status.down")
        self.proc, _, _ = start_server(self.tmp, self.line_port, self.web_port)
        page.wait_for_selector("#status.up:has-text('connected again')", timeout=30000)
        page.wait_for_selector("#messages li.note:has-text('without its history')")
        self.line_client().publish("lobby", "after the restart")
        page.wait_for_selector("#messages li:has-text('after the restart')")
