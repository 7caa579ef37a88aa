"""The portal's page in the run's headless Chromium, as the browser tests drive it: log in,
wait for the desktop, read what its canvas shows."""
from __future__ import annotations

from selenium.webdriver.common.by import By

from browser import wait_for

# Distinct colours among a grid of the canvas's pixels, and a digest of them all (the page's
# own canvas: same origin, so readable).
CANVAS_FACTS = """
const canvas = document.querySelector('#screen canvas');
if (!canvas || !canvas.width) return null;
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
const colours = new Set();
let digest = 0;
for (let i = 0; i < data.length; i += 4 * 97) {
    colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    digest = (digest * 31 + data[i] + data[i + 1] * 7 + data[i + 2] * 13) >>> 0;
}
return {colours: colours.size, digest, width: canvas.width, height: canvas.height,
        screen: document.getElementById('screen').clientWidth};
"""


def until(driver, condition, timeout: float = 30):
    """wait_for, saying on a timeout what the page shows and what its console said."""
    from selenium.common.exceptions import TimeoutException
    try:
        return wait_for(driver, condition, timeout)
    except TimeoutException:
        text = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"page shows: {text!r}; console: {driver.get_log('browser')}")


def status(driver) -> str:
    return driver.find_element(By.ID, "status").text


def canvas(driver) -> dict | None:
    return driver.execute_script(CANVAS_FACTS)


def log_in(driver, node, password="secret") -> None:
    driver.get(f"https://127.0.0.1:{node.port}/")
    driver.find_element(By.ID, "login").send_keys("alice@acme")
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "submit").click()


def connected(driver) -> bool:
    return driver.find_element(By.ID, "client").get_attribute("data-state") == "connected"


CANVAS_RGB = """
const canvas = document.querySelector('#screen canvas');
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
const rgb = new Uint8Array(canvas.width * canvas.height * 3);
for (let i = 0, j = 0; i < data.length; i += 4, j += 3) {
    rgb[j] = data[i]; rgb[j + 1] = data[i + 1]; rgb[j + 2] = data[i + 2];
}
let text = '';
for (let i = 0; i < rgb.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, rgb.subarray(i, i + 0x8000));
}
return [canvas.width, canvas.height, btoa(text)];
"""


def canvas_rgb(driver) -> tuple[int, int, bytes]:
    """The remote screen as the page painted it: width, height, RGB rows top to bottom."""
    import base64
    width, height, encoded = driver.execute_script(CANVAS_RGB)
    return width, height, base64.b64decode(encoded)


# This machine's tests make and remove network interfaces (the nodes' bridges, containers'
# veths); the run's one Chromium takes an address change on any of them for a change of its
# own network and aborts the requests in flight (net::ERR_NETWORK_CHANGED), noVNC's modules
# among them, and the page then never connects. A user's browser runs elsewhere.
NETWORK_CHANGED = "ERR_NETWORK_CHANGED"


def open_in_page(driver, node, vm_id: int) -> dict:
    """Log in at the node's portal, open the desktop vm_id and wait until it is painted;
    the canvas facts. The page is loaded once more when Chromium aborted it for a network
    change (NETWORK_CHANGED), never for anything else."""
    log_in(driver, node)
    until(driver, lambda d: d.find_elements(By.ID, f"open-{vm_id}"))
    driver.find_element(By.ID, f"open-{vm_id}").click()
    for attempt in (1, 2):
        try:
            until(driver, connected, 60)
            break
        except AssertionError as failure:
            if attempt == 2 or NETWORK_CHANGED not in str(failure):
                raise
            driver.refresh()  # the desktop's page (/portal/desktop?id=N), loaded again
    return until(driver, lambda d: (c := canvas(d)) and c["colours"] > 1 and c)
