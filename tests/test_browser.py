"""The browser fixtures (tests/browser.py) against a real local HTTPS page using the npm htmx.

A tiny HTTPS server on 127.0.0.1 (the tests' self-signed certificate) serves a page that loads
htmx from node_modules/ (installed by scripts/install-deps.sh) from that same server: clicking
its htmx button swaps the server's answer in, which proves the browser, the certificate
handling and the npm assets together.
"""
from __future__ import annotations

import http.server
import ssl
import struct
import threading
from pathlib import Path

import pytest

from browser import (console_errors, no_external_requests, screenshot, set_phone_size,
                     wait_for)
from tests_tls import write_pair

By = pytest.importorskip("selenium.webdriver.common.by").By  # a skip (a failure under CI)

HTMX = Path(__file__).resolve().parent.parent / "node_modules/htmx.org/dist/htmx.min.js"
HEAD = '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">' \
       '<meta name="viewport" content="width=device-width, initial-scale=1">'
PAGES = {
    "/": HEAD + '<script src="/static/htmx.min.js"></script>'
                '<button hx-get="/greeting" hx-target="#out">Greet</button>'
                '<p id="out">not yet</p>',
    "/outside": HEAD + '<img id="logo" src="https://assets.invalid/logo.png">',
}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/static/htmx.min.js":
            self._send(200, "text/javascript", HTMX.read_bytes())
        elif self.path == "/greeting" and self.headers.get("HX-Request") == "true":
            self._send(200, "text/html", b"Hello from the server")  # htmx asked, not a link
        elif self.path in PAGES:
            self._send(200, "text/html; charset=utf-8", PAGES[self.path].encode())
        else:
            self._send(404, "text/plain", b"not found")

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """https://127.0.0.1:PORT of the tiny server, stopped after the module."""
    if not HTMX.is_file():
        pytest.fail(f"{HTMX} missing: scripts/install-deps.sh installs the npm assets")
    cert, key, _ = write_pair(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_an_htmx_button_swaps_the_answer_in(page, site):
    page.get(site + "/")
    page.find_element(By.TAG_NAME, "button").click()
    wait_for(page, lambda d: d.find_element(By.ID, "out").text == "Hello from the server")
    assert no_external_requests(page) == []
    assert console_errors(page) == []


def test_an_outside_resource_is_reported(page, site):
    page.get(site + "/outside")
    # the browser cannot reach it (no such host): listed all the same, and its failure logged
    assert wait_for(page, no_external_requests) == ["https://assets.invalid/logo.png"]
    assert any("assets.invalid/logo.png" in error for error in console_errors(page))


def test_a_phone_sees_the_page_390_pixels_wide(page, site, tmp_path):
    set_phone_size(page)
    page.get(site + "/")
    assert page.execute_script("return [innerWidth, innerHeight]") == [390, 844]
    png = screenshot(page, tmp_path / "shots" / "phone.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (390, 844)  # the IHDR chunk's width, height
