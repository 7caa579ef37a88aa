"""Selenium fixtures for the web pages' tests: one real headless Chromium for the whole run.

Debian's chromium, driven through Debian's chromedriver (/usr/bin/chromedriver) named in
selenium's Service: with a driver path given, selenium never runs selenium-manager, which would
try to download a browser (the test machines have no route out). A missing browser skips, except
under CI=true, where it fails.

    browser                   session fixture: the one driver, quit at the end of the run
    page                      function fixture: that driver, with no cookies, no storage, no
                              console messages left by an earlier test, at desktop size
    wait_for(driver, cond)    WebDriverWait(driver, 30).until(cond)
    screenshot(driver, path)  a PNG of the viewport
    no_external_requests(d)   URLs the current document loaded from another host than its own
    console_errors(driver)    the console's errors since the last call
    set_phone_size(driver)    a 390x844 phone viewport (mobile: honours <meta name=viewport>)
    set_desktop_size(driver)  a 1280x800 desktop viewport
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARGUMENTS = ("--headless=new", "--no-sandbox",  # the tests run as root
             "--disable-dev-shm-usage", "--window-size=1280,800",
             "--ignore-certificate-errors")  # the test servers' certificate is self-signed
PHONE = (390, 844)
DESKTOP = (1280, 800)


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """The run's one headless Chromium (a selenium WebDriver); use `page` in tests."""
    try:  # imported here: conftest.py imports this module for every test, selenium or not
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium not installed (scripts/install-deps.sh)")
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        _missing(f"{CHROMIUM} or {CHROMEDRIVER} missing (apt-get install chromium chromium-driver)")
    home = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={home / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # for console_errors
    service = Service(executable_path=CHROMEDRIVER, log_output=str(home / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser):
    """The shared driver, clean: a login from an earlier test does not leak into this one."""
    browser.get("about:blank")
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    browser.get_log("browser")  # drained: console_errors reports this test's only
    set_desktop_size(browser)
    yield browser
    # Storage belongs to an origin: clear the one the test ended on (it is where it logged in).
    origin = _origin(browser.current_url)
    if origin:
        browser.execute_cdp_cmd("Storage.clearDataForOrigin",
                                {"origin": origin, "storageTypes": "all"})
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    browser.get("about:blank")


def wait_for(driver, condition, timeout: float = 30):
    """Waits until condition(driver) is truthy and returns it (TimeoutException otherwise).
    A condition that read an element the page replaced meanwhile (an htmx swap, a live
    update) is asked again: what it was looking at is gone, not wrong."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def asked_again_if_replaced(d):
        try:
            return condition(d)
        except StaleElementReferenceException:
            return False
        except WebDriverException as exc:
            if "does not belong to the document" in (exc.msg or ""):
                return False  # chromedriver's word for the same, from the inspector
            raise
    return WebDriverWait(driver, timeout).until(asked_again_if_replaced)


def screenshot(driver, path) -> Path:
    """Saves a PNG of the viewport at path (its folder made if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(path)):
        raise RuntimeError(f"chromium could not take a screenshot into {path}")
    return path


_LOADED = """return performance.getEntriesByType('navigation')
    .concat(performance.getEntriesByType('resource')).map(entry => entry.name)"""


def no_external_requests(driver) -> list[str]:
    """The URLs the current document fetched from another host than its own: [] for a page
    that needs no outside network. Failed fetches count too (Resource Timing lists them, with
    status 0); WebSocket connections are not in Resource Timing and not seen here."""
    host = urlsplit(driver.current_url).hostname
    loaded = driver.execute_script(_LOADED)
    return [url for url in loaded
            if urlsplit(url).scheme not in ("data", "blob", "about")
            and urlsplit(url).hostname != host]


def console_errors(driver) -> list[str]:
    """The console's errors (script errors, console.error, failed loads) since the last call:
    reading the browser's log empties it. The browser's own /favicon.ico probe, which it makes
    when a page declares no icon and at a moment of its choosing, is left out."""
    errors = []
    for entry in driver.get_log("browser"):
        message = entry["message"]
        if entry["level"] != "SEVERE":
            continue
        if entry.get("source") == "network" and urlsplit(message.split(" ", 1)[0]).path == \
                "/favicon.ico":
            continue
        errors.append(message)
    return errors


def set_phone_size(driver) -> None:
    """A phone's 390x844 viewport, as a mobile browser: a page without <meta name=viewport>
    is laid out 980 pixels wide and shrunk, as a phone would show it."""
    _viewport(driver, PHONE, mobile=True)


def set_desktop_size(driver) -> None:
    """A 1280x800 desktop viewport."""
    _viewport(driver, DESKTOP, mobile=False)


def _viewport(driver, size: tuple[int, int], mobile: bool) -> None:
    # The window's size would include the browser's own bars; this is the page's exact size.
    width, height = size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") else None
