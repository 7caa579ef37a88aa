"""The WAT's live updates and page weight (python -m bench.wat_bench; part of make bench).

1. A VM state UPDATE sent and committed (as the node writes it) until its `vm-N-state` event
   arrives at a raw Server-Sent Events client of /wat/events, over TLS from a real qvd-api
   process (trigger, NOTIFY, the API's listener thread, the stream's queue, the HTTP chunk).
   Floor: the database's own NOTIFY round trip on the same server in the same run
   (bench.hkd_bench.notify_round_trips: NOTIFY to a listener that answers with a NOTIFY).
2. The same change until it is shown in a real browser: one headless Chromium (Debian's,
   through its chromedriver) logged in through /wat/login with /wat/vms open. Before each
   UPDATE a MutationObserver is put on the VM's state cell; after the commit an async script
   waits for it to see the new text. Timed on Python's clock, from the UPDATE sent to the
   script's answer, like figure 1 (so it includes one WebDriver answer, also reported: the
   same wait when the text is already shown); and on the browser's own clock, WebDriver left
   out: the observer's performance.timeOrigin + now() against Python's time.time() at the
   UPDATE (one machine, one clock; the row gives their offset as measured: the browser's
   read between two time.time() calls, ± half the time between them, which WebDriver's round
   trip keeps wide). Peer: figure 1 of the same run; the ratio is what the browser (htmx's
   SSE extension, the swap, the DOM) adds. Without chromium or selenium, these rows say so
   and the others are measured.
3. The page weight of /wat/vms (its default page of 50 rows) with 1,000 VMs: the HTML's
   bytes and the p50 of its fetches with the session cookie over TLS, against the same 50 rows
   as JSON (`GET /api/v1/vms?limit=50`, bearer token, same server, same run); and the bytes
   of the page's assets (htmx, its SSE extension, our CSS and script), a first visit's weight,
   as served (the server compresses nothing).
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import tempfile
import time
from urllib.parse import urlencode

import psycopg

from .api_bench import LOGIN, PASSWORD, ApiServer, _make_admin
from .common import Row, ms, private_database, summary, table, timed
from .hkd_bench import notify_round_trips

SEED = """
INSERT INTO tenants (name) VALUES ('acme');
INSERT INTO users (tenant_id, login) SELECT id, 'alice' FROM tenants WHERE name = 'acme';
INSERT INTO osfs (tenant_id, name, memory) SELECT id, 'desktop', 256 FROM tenants
  WHERE name = 'acme';
INSERT INTO vms (name, user_id, osf_id, ip) SELECT 'desk', u.id, o.id, '10.0.0.100'
  FROM users u, osfs o;
INSERT INTO hosts (name, address) VALUES ('node1', '127.0.0.2');
INSERT INTO host_runtimes (host_id) SELECT id FROM hosts;
INSERT INTO vm_runtimes (vm_id, host_id) SELECT v.id, h.id FROM vms v, hosts h;
"""
STATES = ("starting", "running")  # alternated: each UPDATE changes the state
PAGE_VMS = 1_000   # VMs in the database for the page weight (the seeded one included)
MORE_VMS = f"""
INSERT INTO vms (name, user_id, osf_id, ip) SELECT 'lab-' || n, u.id, o.id,
  '10.0.0.0'::inet + 200 + n FROM generate_series(1, {PAGE_VMS - 1}) n, users u, osfs o;
INSERT INTO vm_runtimes (vm_id) SELECT id FROM vms WHERE name LIKE 'lab-%';
ANALYZE;
"""
ASSETS = ("/wat/vendor/htmx/htmx.min.js", "/wat/vendor/htmx-sse/sse.js",
          "/wat/static/wat.css", "/wat/static/wat.js")  # what every WAT page loads

# As tests/browser.py (not imported: it is a pytest module): Debian's chromium through
# Debian's chromedriver named in selenium's Service, so that selenium-manager never runs.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARGUMENTS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
             "--window-size=1280,800", "--ignore-certificate-errors")
# The page's EventSource is open (htmx's SSE extension keeps it in the body's internal data;
# the server subscribes the stream before it answers): no change committed after is missed.
SSE_OPEN = """const data = document.body && document.body['htmx-internal-data'];
return !!(data && data.sseEventSource && data.sseEventSource.readyState === 1);"""
# Before the UPDATE: an observer on the cell, which notes when it shows the expected text.
ARM = """const [selector, expected] = arguments;
const cell = document.querySelector(selector);
const bench = window.__watBench = {seen: null, done: null};
const observer = new MutationObserver(() => {
  if (cell.textContent.trim() !== expected) return;
  observer.disconnect();
  bench.seen = performance.now();
  if (bench.done) bench.done(bench.seen);
});
observer.observe(cell, {childList: true, characterData: true, subtree: true});"""
# After the commit: answers as soon as the observer saw it (at once if it already has).
WAIT = """const done = arguments[arguments.length - 1];
const bench = window.__watBench;
const answer = (seen) => done(performance.timeOrigin + seen);  // ms since the epoch
if (bench.seen !== null) answer(bench.seen); else bench.done = answer;"""
NOW = "return performance.timeOrigin + performance.now()"  # the browser's clock, epoch ms


class EventStream:
    """GET /wat/events as an EventSource reads it: event names and their data."""

    def __init__(self, server: ApiServer, token: str):
        self.conn = http.client.HTTPSConnection("127.0.0.1", server.port,
                                                context=server.context, timeout=30)
        self.conn.request("GET", "/wat/events", headers={"Authorization": f"Bearer {token}"})
        self.reply = self.conn.getresponse()
        if self.reply.status != 200:
            raise RuntimeError(f"GET /wat/events: {self.reply.status} (does api/app.py "
                               "mount the WAT?)")

    def wait_for(self, name: str, data: str) -> None:
        event, lines = None, []
        while True:
            line = self.reply.readline()
            if not line:
                raise RuntimeError("the event stream ended")
            line = line.rstrip(b"\r\n").decode()
            if not line:
                if event == name and "\n".join(lines) == data:
                    return
                event, lines = None, []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                lines.append(line[5:].lstrip(" "))

    def close(self) -> None:
        self.conn.close()


def live_latencies(server: ApiServer, params: dict, count: int) -> list[float]:
    token = server.call("POST", "/api/v1/login", {"login": LOGIN, "password": PASSWORD})["token"]
    stream = EventStream(server, token)
    samples = []
    try:
        with psycopg.connect(**params, autocommit=True) as writer:
            (vm_id,), = writer.execute("SELECT id FROM vms").fetchall()
            for i in range(count + 1):
                state = STATES[i % 2]
                began = time.perf_counter()
                writer.execute("UPDATE vm_runtimes SET vm_state = %s WHERE vm_id = %s",
                               (state, vm_id))
                stream.wait_for(f"vm-{vm_id}-state", state)
                if i:  # the first warms the connections
                    samples.append(time.perf_counter() - began)
    finally:
        stream.close()
    return samples


def start_browser(workdir: str):
    """(a headless Chromium's WebDriver, None), or (None, why there is none)."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium not installed (scripts/install-deps.sh)"
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        return None, f"{CHROMIUM} or {CHROMEDRIVER} missing (apt-get install chromium " \
            "chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={workdir}/chromium")
    service = Service(executable_path=CHROMEDRIVER,
                      log_output=os.path.join(workdir, "chromedriver.log"))
    try:
        return webdriver.Chrome(options=options, service=service), None
    except WebDriverException as exc:
        return None, f"chromium did not start: {exc.msg or type(exc).__name__}"


def _until(driver, condition, timeout: float = 30):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout).until(condition)


def open_vm_list(driver, server: ApiServer) -> None:
    """Logged in through the login form, /wat/vms shown with its event stream open."""
    from selenium.webdriver.common.by import By
    name, _, tenant = LOGIN.partition("@")
    driver.get(server.url("/wat/login"))
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "tenant").send_keys(tenant)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    _until(driver, lambda d: d.find_elements(By.ID, "who"))  # the dashboard, logged in
    driver.get(server.url("/wat/vms"))
    _until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "td[data-field=state]"))
    _until(driver, lambda d: d.execute_script(SSE_OPEN))


def clock_offset(driver, tries: int = 20) -> tuple[float, float]:
    """(browser's epoch clock - time.time(), its uncertainty) in seconds: the browser's is
    read between a pair of time.time() calls; the offset from their middle, ± half their
    distance, for the closest pair of `tries`."""
    pairs = []
    for _ in range(tries):
        before = time.time()
        seen = driver.execute_script(NOW) / 1000
        after = time.time()
        pairs.append((after - before, seen - (before + after) / 2))
    width, offset = min(pairs)
    return offset, width / 2


def browser_latencies(driver, server: ApiServer, params: dict, count: int) -> dict:
    """UPDATE sent -> the list's cell shows it, on Python's clock (to the WebDriver answer)
    and on the browser's (to the observer); an answered wait's WebDriver round trip; each
    `count` samples in seconds; and the clocks' disagreement."""
    open_vm_list(driver, server)
    driver.set_script_timeout(30)
    shown, in_page, answered = [], [], []
    with psycopg.connect(**params, autocommit=True) as writer:
        (vm_id,), = writer.execute("SELECT id FROM vms").fetchall()
        cell = f"#vm-{vm_id} td[data-field=state]"
        current = writer.execute("SELECT vm_state FROM vm_runtimes WHERE vm_id = %s",
                                 (vm_id,)).fetchone()[0]
        for i in range(count + 1):
            state = STATES[(i + (current == STATES[0])) % 2]  # never the one shown
            driver.execute_script(ARM, cell, state)
            wall, began = time.time(), time.perf_counter()
            writer.execute("UPDATE vm_runtimes SET vm_state = %s WHERE vm_id = %s",
                           (state, vm_id))
            seen = driver.execute_async_script(WAIT) / 1000
            ended = time.perf_counter()
            driver.execute_async_script(WAIT)  # seen already: WebDriver's part alone
            if i:  # the first warms the connections
                shown.append(ended - began)
                in_page.append(seen - wall)
                answered.append(time.perf_counter() - ended)
    return {"shown": summary(shown), "in_page": summary(in_page),
            "answered": summary(answered), "clocks": clock_offset(driver)}


def _get(conn: http.client.HTTPSConnection, path: str, headers: dict) -> bytes:
    conn.request("GET", path, headers=headers)
    reply = conn.getresponse()
    body = reply.read()
    if reply.status != 200:
        raise RuntimeError(f"GET {path}: {reply.status} {body[:200]!r}")
    return body


def wat_cookie(server: ApiServer) -> str:
    """The session cookie the login form sets (a Cookie header's value)."""
    name, _, tenant = LOGIN.partition("@")
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.context,
                                       timeout=30)
    try:
        conn.request("POST", "/wat/login", urlencode({"name": name, "tenant": tenant,
                                                       "password": PASSWORD}),
                     {"Content-Type": "application/x-www-form-urlencoded"})
        reply = conn.getresponse()
        reply.read()
        cookie = reply.getheader("Set-Cookie") or ""
        if reply.status != 303 or not cookie:
            raise RuntimeError(f"POST /wat/login: {reply.status}, no session cookie")
        return cookie.split(";", 1)[0]
    finally:
        conn.close()


def page_weight(server: ApiServer, count: int) -> dict:
    """/wat/vms against /api/v1/vms?limit=50: bytes and fetch times (kept-alive connections,
    one fetch each first to warm them); the assets' bytes."""
    cookie = {"Cookie": wat_cookie(server)}
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.context,
                                       timeout=30)  # not server.call's: it may have idled out
    try:
        conn.request("POST", "/api/v1/login", json.dumps({"login": LOGIN,
                                                          "password": PASSWORD}),
                     {"Content-Type": "application/json"})
        reply = conn.getresponse()
        bearer = {"Authorization": f"Bearer {json.loads(reply.read())['token']}"}
        html_page = _get(conn, "/wat/vms", cookie)
        rows = html_page.count(b'<tr id="vm-')
        if rows != 50:
            raise RuntimeError(f"GET /wat/vms: {rows} VM rows, not a page of 50")
        json_page = _get(conn, "/api/v1/vms?limit=50", bearer)
        page = summary(timed(lambda: _get(conn, "/wat/vms", cookie), count))
        api = summary(timed(lambda: _get(conn, "/api/v1/vms?limit=50", bearer), count))
        assets = sum(len(_get(conn, path, {})) for path in ASSETS)
    finally:
        conn.close()
    return {"html_bytes": len(html_page), "json_bytes": len(json_page), "page": page,
            "api": api, "assets_bytes": assets}


def run(count: int) -> dict:
    """count: SSE events timed one by one; count // 2 browser updates and page fetches."""
    fewer = max(5, count // 2)
    with private_database("bench_wat") as (root, params):
        with psycopg.connect(**params, autocommit=True) as conn:
            conn.execute(SEED)
        _make_admin(params)
        floor = asyncio.run(notify_round_trips(params, count))
        workdir = tempfile.mkdtemp(prefix="qvd-bench-wat-")
        server = ApiServer(workdir, params)
        try:
            latency = live_latencies(server, params, count)
            driver, why = start_browser(workdir)
            browser = None
            if driver is not None:
                try:
                    browser = browser_latencies(driver, server, params, fewer)
                finally:
                    driver.quit()
            with psycopg.connect(**params, autocommit=True) as conn:
                conn.execute(MORE_VMS)
            weight = page_weight(server, fewer)
        finally:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    return {"floor": summary(floor), "latency": summary(latency), "browser": browser,
            "no_browser": why, **weight}


def rows(result: dict) -> list[Row]:
    floor, latency = result["floor"], result["latency"]
    found = [Row(f"wat_live_{label}", "WAT live update: VM state UPDATE committed -> its SSE "
                 f"event at a /wat/events client, {label} (n={latency['n']})",
                 latency[label] * 1000, "ms", floor[label] * 1000, "bare NOTIFY round trip")
             for label in ("p50", "p99")]
    browser = result.get("browser")
    for label in ("p50", "p99"):
        figure = ("WAT live update in Chromium: VM state UPDATE committed -> /wat/vms's state "
                  "cell shows it (MutationObserver; Python's clock, commit to the WebDriver "
                  f"answer), {label}")
        if browser is None:
            found.append(Row(f"wat_browser_{label}", figure, None, "ms",
                             note=result.get("no_browser") or "no browser"))
            continue
        found.append(Row(f"wat_browser_{label}", f"{figure} (n={browser['shown']['n']})",
                         browser["shown"][label] * 1000, "ms", latency[label] * 1000,
                         f"raw /wat/events client, {label}"))
    for label in ("p50", "p99"):
        figure = ("the same on the browser's clock, UPDATE sent -> the observer (WebDriver "
                  f"left out), {label}")
        if browser is None:
            found.append(Row(f"wat_browser_clock_{label}", figure, None, "ms",
                             note=result.get("no_browser") or "no browser"))
            continue
        offset, within = browser["clocks"]
        found.append(Row(f"wat_browser_clock_{label}", f"{figure} (browser's clock - "
                         f"Python's: {offset * 1000:+.2f} ± {within * 1000:.2f} ms)",
                         browser["in_page"][label] * 1000, "ms", latency[label] * 1000,
                         f"raw /wat/events client, {label}"))
    if browser is not None:
        found.append(Row("wat_browser_webdriver", "WebDriver's part of the first: an async "
                         "script answering at once, p50", browser["answered"]["p50"] * 1000,
                         "ms", None, "-"))
    page, api = result["page"], result["api"]
    what = f"GET /wat/vms, {PAGE_VMS:,} VMs, its page of 50 rows (HTML, session cookie, TLS)"
    peer = "GET /api/v1/vms?limit=50 (JSON, bearer)"
    found += [
        Row("wat_page_bytes", f"{what}: size", result["html_bytes"] / 1000, "kB",
            result["json_bytes"] / 1000, peer),
        Row("wat_page_p50", f"{what}: p50 (n={page['n']})", page["p50"] * 1000, "ms",
            api["p50"] * 1000, f"{peer}, p50"),
        Row("wat_assets_bytes", f"the page's assets ({', '.join(map(os.path.basename, ASSETS))}"
            "): a first visit's weight, uncompressed", result["assets_bytes"] / 1000, "kB",
            None, "-"),
    ]
    return found


def distributions(result: dict) -> dict:
    browser = result.get("browser")
    return {"wat_live": ("VM state UPDATE committed -> SSE event at the client", "ms", {
        "qvd-api /wat/events over TLS": ms(result["latency"]["samples"]),
        "Chromium: /wat/vms's cell shows it": ms(browser["shown"]["samples"]) if browser
        else [],
        "bare NOTIFY round trip": ms(result["floor"]["samples"])})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200,
                        help="SSE updates timed one by one (half as many in the browser "
                        "and page fetches)")
    parser.add_argument("--quick", action="store_true", help="--count 50, as run_all --quick")
    args = parser.parse_args()
    print(table(rows(run(50 if args.quick else args.count))))


if __name__ == "__main__":
    main()
