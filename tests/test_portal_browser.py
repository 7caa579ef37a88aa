"""The browser client in a real headless Chromium against a real node (process backend, real
Xvnc with an xterm): log in at the portal, open the desktop, see it painted, type into its
terminal, resize the window and see the remote screen follow, lose the connection and come
back by itself, be taken over by a QVD client, and warn of the desktop's expiration."""
from __future__ import annotations

import os
import signal
import uuid

import pytest

from browser import console_errors, no_external_requests, screenshot
from hkd_nodes import l7r_node
from hkd_nodes import wait_for as wait_until
from portal_page import canvas, connected, log_in, status, until
from test_l7r import open_desktop

By = pytest.importorskip("selenium.webdriver.common.by").By  # a skip (a failure under CI)
ActionChains = pytest.importorskip("selenium.webdriver").ActionChains
Keys = pytest.importorskip("selenium.webdriver.common.keys").Keys

@pytest.fixture
def node(demo, tmp_path):
    hkd = l7r_node(demo, tmp_path)
    yield hkd
    hkd.cleanup()


def test_the_desktop_in_a_browser(demo, node, page, tmp_path):
    pictures = os.environ.get("QVD_SCREENSHOTS") or str(tmp_path)
    log_in(page, node, "wrong")
    assert until(page, lambda d: d.find_element(By.ID, "error")).text == \
        "Authentication failed."
    log_in(page, node)
    until(page, lambda d: d.find_elements(By.ID, "open-1"))
    assert "desk" in page.find_element(By.ID, "desktops").text
    page.find_element(By.ID, "open-1").click()

    # The desktop is painted: more than one colour (Xvnc's background and the xterm).
    until(page, connected, 60)
    painted = until(page, lambda d: (c := canvas(d)) and c["colours"] > 1 and c)
    assert painted["width"] == painted["screen"]  # the session was made for this window
    screenshot(page, os.path.join(pictures, "portal-desktop.png"))
    assert no_external_requests(page) == []

    # Typing reaches the terminal: the command it runs leaves a file, and the screen changes.
    mark = f"/tmp/qvd-portal-typed-{uuid.uuid4().hex[:8]}"
    screen = page.find_element(By.CSS_SELECTOR, "#screen canvas")
    in_terminal = (-painted["width"] // 2 + 60, -painted["height"] // 2 + 60)  # no WM: focus
    ActionChains(page).move_to_element_with_offset(screen, *in_terminal).click().perform()
    ActionChains(page).send_keys(f"touch {mark}; echo typed-in-a-browser\n").perform()
    try:
        wait_until(lambda: os.path.exists(mark), 20, "the typed command to run")
    finally:
        if os.path.exists(mark):
            os.unlink(mark)
    until(page, lambda d: canvas(d)["digest"] != painted["digest"])

    # The clipboard both ways. To the desktop: text sent from the panel is what the terminal
    # pastes (Shift+Insert); from it: a line selected in the terminal reaches the panel.
    clipped = f"/tmp/qvd-portal-clip-{uuid.uuid4().hex[:8]}"
    page.find_element(By.ID, "clipboard-toggle").click()
    panel = page.find_element(By.ID, "clipboard-text")
    panel.clear()
    panel.send_keys(clipped)
    page.find_element(By.ID, "clipboard-send").click()
    page.find_element(By.ID, "clipboard-toggle").click()  # the panel closed: the screen as before
    until(page, lambda d: (c := canvas(d)) and c["height"] == painted["height"])
    ActionChains(page).move_to_element_with_offset(screen, *in_terminal).click().perform()
    before = canvas(page)["digest"]
    ActionChains(page).key_down(Keys.SHIFT).send_keys(Keys.INSERT).key_up(Keys.SHIFT).perform()
    until(page, lambda d: canvas(d)["digest"] != before)  # pasted (xterm asks, then inserts)
    ActionChains(page).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL) \
        .send_keys("touch \n").perform()
    try:
        wait_until(lambda: os.path.exists(clipped), 20, "the pasted path to be touched")
    except AssertionError:
        screenshot(page, os.path.join(pictures, "portal-clipboard-failed.png"))
        raise
    finally:
        if os.path.exists(clipped):
            os.unlink(clipped)
    page.execute_script("arguments[0].value = ''", panel)  # (hidden: not typed into)
    first_line = (-painted["width"] // 2 + 60, -painted["height"] // 2 + 8)
    ActionChains(page).move_to_element_with_offset(screen, *first_line) \
        .click().click().click().perform()  # xterm: a triple click selects the line
    # (the double click before the third selects a word first: the line's text replaces it)
    until(page, lambda d: "root@vm" in (panel.get_attribute("value") or ""))

    # The remote screen follows the window (SetDesktopSize; Xvnc resizes its framebuffer).
    # (Headless Chromium keeps its window's size: the viewport is what a resize changes.)
    page.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 1000, "height": 700, "deviceScaleFactor": 1, "mobile": False})
    try:
        resized = until(page, lambda d: (c := canvas(d)) and c["width"] != painted["width"]
                        and c["width"] == c["screen"] and c)
    finally:
        page.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert resized["width"] < painted["width"]

    # A dropped connection (its L7R process dies): the page reconnects by itself, same cookie.
    (pid,), = demo.sql("SELECT l7r_pid FROM vm_runtimes WHERE vm_id = 1")[0:1]
    os.kill(pid, signal.SIGKILL)
    until(page, lambda d: "reconnecting" in status(d).lower() or
             (connected(d) and _l7r_pid(demo) not in (None, pid)), 30)
    until(page, lambda d: connected(d) and _l7r_pid(demo) not in (None, pid), 60)

    # A QVD client takes the desktop over: the browser says so and does not fight back.
    conn, reply, banner = open_desktop((node.port, node.cert))
    with conn:
        assert reply.status == 101 and banner == b"RFB 003.008\n"
        until(page, lambda d: "opened elsewhere" in status(d))
        assert page.find_element(By.ID, "reconnect").is_displayed()
    # Past its soft expiration, the page says so when it opens (and as it polls).
    demo.ok("vm", "edit", "-f", "id=1", "expiration_soft=2020-01-01T00:00",
            "expiration_hard=2099-01-01T00:00")
    page.refresh()
    def banner(driver) -> str:
        return driver.find_element(By.ID, "banner").text  # "" while hidden
    until(page, lambda d: "This desktop has expired" in banner(d))
    until(page, connected)
    assert "This desktop has expired" in banner(page) and "stopped at" in banner(page)
    page.find_element(By.ID, "disconnect").click()  # the user leaves: no reconnecting
    until(page, lambda d: status(d) == "Disconnected")
    wait_until(lambda: demo.sql("SELECT user_state FROM vm_runtimes WHERE vm_id = 1")[0][0]
               == "disconnected", 20, "the session to end")
    # What the console may say: the refused password's 401, the dropped and taken-over
    # WebSocket; nothing else (no script error).
    assert [e for e in console_errors(page)
            if "status of 401" not in e and "WebSocket" not in e] == []


def _l7r_pid(demo):
    rows = demo.sql("SELECT l7r_pid FROM vm_runtimes WHERE vm_id = 1")
    return rows[0][0] if rows else None
