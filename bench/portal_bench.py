"""The desktop in a browser (python -m bench.portal_bench; part of make bench).

1. Browser connect to a running VM: a real headless Chromium, logged in at the portal, clicks
   Open; timed on the page's own clock (the Performance API: performance.timeOrigin + now()),
   from the click (kept in sessionStorage across the navigation) to the first painted frame
   (the canvas, sampled at each animation frame, shows more than one colour). Peer, same run:
   a QVD client's warm connect to the same VM (new TLS connection, a token as the browser's
   cookie is, list, connect_to_vm, 101, RFB handshake, the first whole frame), our Python
   RFB viewer (Raw encoding; the browser's noVNC asks for compressed ones).
2. Throughput of the desktop stream, WebSocket against QVD tunnel: the same Python RFB viewer
   (Raw encoding, an incremental update asked for as soon as the last one arrived) for a few
   seconds over the portal's WebSocket and over the QVD tunnel, on an idle desktop (an xterm
   at its prompt) and on a busy one (an xterm printing without pause): desktop bytes per
   second received by the viewer after its first whole frame.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import tempfile
import time

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request, TextMessage

from qvd.client import rfb

from .common import Row, ms, summary, table
from .l7r_bench import connect_with_token, token_for
from .node import BenchNode, bench_node, wait
from .wat_bench import start_browser

PASSWORD = "bench"
BUSY = "#!/bin/sh\nwhile :; do ls -l /usr/bin; done\n"  # the busy desktop's terminal
# Installed before any of the portal's scripts: the desktops page notes the click on Open,
# the desktop page the first animation frame whose canvas (its top rows, where the
# terminal's first line is) is not one colour.
PROBE = """
document.addEventListener('click', (event) => {
  if (event.target.closest && event.target.closest('[id^=open-]'))
    sessionStorage.setItem('qvdClick', String(performance.timeOrigin + performance.now()));
}, true);
if (location.pathname === '/portal/desktop') {
  const look = () => {
    const canvas = document.querySelector('#screen canvas');
    if (canvas && canvas.width > 1) {
      const data = canvas.getContext('2d').getImageData(
        0, 0, canvas.width, Math.min(canvas.height, 48)).data;  // the top: the terminal's
      for (let i = 4; i < data.length; i += 4)
        if (data[i] !== data[0] || data[i + 1] !== data[1] || data[i + 2] !== data[2]) {
          window.qvdPainted = performance.timeOrigin + performance.now();
          return;
        }
    }
    requestAnimationFrame(look);
  };
  requestAnimationFrame(look);
}
"""
PAINTED = ("return window.qvdPainted ? [Number(sessionStorage.getItem('qvdClick')), "
           "window.qvdPainted] : null")


class WebSocketStream:
    """The portal's tunnel as a socket for rfb.Stream: recv() and sendall() of the RFB bytes
    carried in binary frames (wsproto)."""

    def __init__(self, port: int, vm_id: int, cookie: str, context: ssl.SSLContext):
        self.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), 30))
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(
            host=f"127.0.0.1:{port}", target=f"/portal/tunnel?id={vm_id}&geometry=1024x768",
            extra_headers=[(b"Origin", f"https://127.0.0.1:{port}".encode()),
                           (b"Cookie", f"qvd_portal={cookie}".encode())])))
        self.pending: list[bytes] = []
        self.ready = False
        while not self.ready:  # the handshake, the progress lines, {"ready"}
            self._receive()

    def _receive(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise rfb.RfbError("the tunnel closed")
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                message = json.loads(event.data)
                if message.get("error"):
                    raise rfb.RfbError(message["error"])
                self.ready = self.ready or bool(message.get("ready"))
            elif isinstance(event, BytesMessage):
                self.pending.append(bytes(event.data))
            elif isinstance(event, CloseConnection):
                raise rfb.RfbError(f"the tunnel closed ({event.code})")
            elif not isinstance(event, AcceptConnection):
                raise rfb.RfbError(f"unexpected {type(event).__name__}")

    def recv(self, _size: int) -> bytes:
        while not self.pending:
            self._receive()
        return self.pending.pop(0)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(self.ws.send(BytesMessage(data=data)))

    def settimeout(self, timeout: float) -> None:
        self.sock.settimeout(timeout)

    def close(self) -> None:
        self.sock.close()


def portal_cookie(node: BenchNode, user: int) -> str:
    """A portal session for bench<user>: the cookie the login form sets."""
    from urllib.parse import urlencode
    body = urlencode({"login": f"bench{user}", "password": PASSWORD}).encode()
    with node.tls.wrap_socket(socket.create_connection(("127.0.0.1", node.port), 30)) as sock:
        sock.sendall(b"POST /portal/login HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                     b"Origin: https://127.0.0.1:%d\r\nContent-Type: application/"
                     b"x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s"
                     % (node.port, node.port, len(body), body))
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    for line in reply.split(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"set-cookie: qvd_portal="):
            return line.split(b"=", 1)[1].split(b";")[0].decode()
    raise RuntimeError(f"the portal login gave no cookie: {reply[:200]!r}")


def first_frame(sock, early: bytes = b""):
    """RFB handshake and one whole frame over sock: (stream, width, height, frame)."""
    stream = rfb.Stream(sock, early)
    width, height = rfb._handshake(stream, sock)
    frame = bytearray(width * height * 4)
    rfb._request(sock, width, height, incremental=False)
    while (kind := stream.read(1)[0]) != 0:
        rfb._skip_message(stream, kind)
    rfb._apply_update(stream, frame, width)
    return stream, width, height, frame


def qvd_client_connect(node: BenchNode, token: str, vm_id: int) -> None:
    conn = connect_with_token(node, token, vm_id)  # a token, as the browser's cookie
    try:
        first_frame(conn.sock, conn.buffer)
    finally:
        conn.close()


def throughput(sock, early: bytes, seconds: float) -> float:
    """Desktop bytes per second received while asking for updates back to back (an idle
    desktop sends nothing until it changes: the wait ends with the time)."""
    stream, width, height, frame = first_frame(sock, early)  # not counted
    received, began = 0, time.perf_counter()
    while (left := seconds - (time.perf_counter() - began)) > 0:
        rfb._request(sock, width, height, incremental=True)
        sock.settimeout(left)
        try:
            while (kind := stream.read(1)[0]) != 0:
                rfb._skip_message(stream, kind)
        except (TimeoutError, socket.timeout):
            break
        sock.settimeout(30)  # the rest of the update follows at once
        counter = _Counting(stream)  # an update's size: what applying it read
        rfb._apply_update(counter, frame, width)
        received += counter.count + 1
    return received / seconds


class _Counting:
    """An rfb.Stream that counts what is read through it."""

    def __init__(self, stream: rfb.Stream):
        self.stream, self.count = stream, 0

    def read(self, size: int) -> bytes:
        self.count += size
        return self.stream.read(size)


def browser_connects(node: BenchNode, count: int, workdir: str) -> dict:
    driver, why = start_browser(workdir)
    if driver is None:
        return {"skipped": why}
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    until = WebDriverWait(driver, 60).until
    samples = []
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PROBE})
        driver.get(f"https://127.0.0.1:{node.port}/")
        driver.find_element(By.ID, "login").send_keys("bench0")
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "submit").click()
        for i in range(count + 1):
            driver.get(f"https://127.0.0.1:{node.port}/")
            until(lambda d: d.find_elements(By.ID, "open-1"))[0].click()
            clicked, painted = until(lambda d: d.execute_script(PAINTED))
            if i:  # the first warms the browser's cache and connections
                samples.append((painted - clicked) / 1000)
    finally:
        driver.quit()
    return summary(samples)


def run(count: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as workdir:
        busy = os.path.join(workdir, "busy.sh")
        with open(busy, "w", encoding="ascii") as handle:
            handle.write(BUSY)
        os.chmod(busy, 0o755)
        os.chmod(workdir, 0o755)
        with bench_node(users=2) as node:
            node.admin("vm", "propset", "-f", "name=desk1", f"vma.x_session=xterm -e {busy}")
            for name in ("desk0", "desk1"):
                node.admin("vm", "start", "-f", f"name={name}")
            wait(lambda: all(s[1] == "running" for s in node.states()))
            result = {"browser": browser_connects(node, count, workdir)}
            peer, token = [], token_for(node, 0)
            for i in range(count + 1):
                began = time.perf_counter()
                qvd_client_connect(node, token, 1)
                if i:
                    peer.append(time.perf_counter() - began)
            result["qvd_client"] = summary(peer)
            cookies = [portal_cookie(node, user) for user in (0, 1)]
            for label, vm_id in (("idle", 1), ("busy", 2)):
                conn = node.connect_desktop(vm_id - 1, vm_id)
                try:
                    tunnel = throughput(conn.sock, conn.buffer, seconds)
                finally:
                    conn.close()
                ws = WebSocketStream(node.port, vm_id, cookies[vm_id - 1], node.tls)
                try:
                    websocket = throughput(ws, b"", seconds)
                finally:
                    ws.close()
                result[label] = {"tunnel": tunnel, "websocket": websocket}
    return result


def rows(result: dict) -> list[Row]:
    out = []
    browser, peer = result["browser"], result["qvd_client"]
    if "skipped" in browser:
        out.append(Row("portal_connect", "browser connect to a running VM", None, "ms",
                       note=browser["skipped"]))
    else:
        for label in ("p50", "p99"):
            out.append(Row(f"portal_connect_{label}",
                           f"browser connect to a running VM (click on Open -> first painted "
                           f"frame, the page's clock), {label} (n={browser['n']})",
                           browser[label] * 1000, "ms", peer[label] * 1000,
                           "qvd-client warm connect to its first whole frame, same run"))
    for label in ("idle", "busy"):
        figures, scale, unit = result[label], *((1e3, "kB/s") if label == "idle" else
                                                   (1e6, "MB/s"))
        out.append(Row(f"portal_bytes_{label}",
                       f"desktop stream through the portal's WebSocket, {label} desktop "
                       f"(Raw updates back to back)", figures["websocket"] / scale, unit,
                       figures["tunnel"] / scale, "the same through the QVD tunnel, same run"))
    return out


def distributions(result: dict) -> dict:
    if "skipped" in result["browser"]:
        return {}
    return {"portal_connect": ("connect to a running VM, to the first frame", "ms", {
        "browser (portal)": ms(result["browser"]["samples"]),
        "qvd-client": ms(result["qvd_client"]["samples"])})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(table(rows(run(args.count, args.seconds))))


if __name__ == "__main__":
    main()
