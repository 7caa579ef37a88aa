// The browser client: the portal's WebSocket tunnel, then noVNC on the same socket.
// While the desktop comes up the server sends JSON text ({progress}, {error}, {ready, vm});
// after {ready} the socket carries RFB and is handed to noVNC.
import RFB from "/portal/novnc/core/rfb.js";

const client = document.getElementById("client");
let vm = client.dataset.vm;  // a pool's entry (negative) until the tunnel names its VM
const screen = document.getElementById("screen");
const statusLine = document.getElementById("status");
const banner = document.getElementById("banner");
const reconnectButton = document.getElementById("reconnect");
const clipboardPanel = document.getElementById("clipboard");
const clipboardText = document.getElementById("clipboard-text");
const TAKEN_OVER = 4001;
const RETRIES = 8;          // after a network drop, with the same cookie
let rfb = null;
let retries = 0;
let leaving = false;        // the user pressed Disconnect
let expiryWarning = "";     // shown until the page is left, whatever the connection does

function say(text, kind = "") {
    statusLine.textContent = text;
    statusLine.className = kind;
    client.dataset.state = kind || "connecting";
}

function alertBanner(text) {
    banner.textContent = text || "";
    banner.hidden = !text;
}

function connect() {
    leaving = false;
    reconnectButton.hidden = true;
    const geometry = `${Math.max(screen.clientWidth, 640)}x${Math.max(screen.clientHeight, 480)}`;
    const ws = new WebSocket(`wss://${location.host}/portal/tunnel?id=${encodeURIComponent(vm)}` +
                             `&geometry=${geometry}`);
    ws.binaryType = "arraybuffer";
    let ready = false;
    let failure = null;
    ws.onmessage = (event) => {
        if (typeof event.data !== "string") return;
        const message = JSON.parse(event.data);
        if (message.progress) say(message.progress);
        if (message.error) failure = message.error;
        if (message.ready) {
            ready = true;
            vm = String(message.vm);
            attach(ws);
        }
    };
    // noVNC takes ws.onclose over; a listener of our own still hears why it closed.
    ws.addEventListener("close", (event) => closed(event, ready, failure));
}

function attach(ws) {
    rfb = new RFB(screen, ws, {shared: true});
    rfb.resizeSession = true;    // the remote screen follows the window (Xvnc's RandR)
    rfb.scaleViewport = false;
    rfb.focusOnClick = true;
    rfb.addEventListener("connect", () => {
        retries = 0;
        say("Connected", "connected");
        alertBanner(expiryWarning);
        rfb.focus();
    });
    rfb.addEventListener("clipboard", (event) => {
        clipboardText.value = event.detail.text;
        if (navigator.clipboard && document.hasFocus()) {
            navigator.clipboard.writeText(event.detail.text).catch(() => {});
        }
    });
    window.qvd = {rfb};          // for the tests and the curious
}

function closed(event, ready, failure) {
    rfb = null;
    if (leaving) {
        say("Disconnected", "ended");
    } else if (failure || (event.code >= 4000 && event.code !== TAKEN_OVER)) {
        say(failure || event.reason || "The desktop could not be opened", "error");
        alertBanner(failure || event.reason);
    } else if (event.code === TAKEN_OVER) {
        say("Disconnected: your desktop was opened elsewhere", "ended");
        alertBanner("Your desktop was opened elsewhere (or an administrator disconnected it).");
    } else if (retries < RETRIES) {  // the network dropped: the desktop is still there
        retries += 1;
        const delay = Math.min(500 * 2 ** (retries - 1), 8000);
        say(`Connection lost: reconnecting (${retries}/${RETRIES})…`, "reconnecting");
        setTimeout(connect, delay);
        return;
    } else {
        say("Connection lost", "error");
    }
    reconnectButton.hidden = false;
}

// Expirations: the pages poll the user's desktops (the tunnel holds no database).
async function watchExpiration() {
    try {
        const reply = await fetch("/portal/desktops.json", {credentials: "same-origin"});
        if (!reply.ok) return;
        const desktop = (await reply.json()).find((d) => String(d.id) === vm);
        const now = Date.now() / 1000;
        if (desktop && desktop.expiration_soft && now >= desktop.expiration_soft) {
            const hard = desktop.expiration_hard
                ? ` It will be stopped at ${new Date(desktop.expiration_hard * 1000).toLocaleTimeString()}.`
                : "";
            expiryWarning = `This desktop has expired: save your work and log out.${hard}`;
            alertBanner(expiryWarning);
        }
    } catch (error) {
        // offline for a moment: the next round tells
    }
}

document.getElementById("disconnect").addEventListener("click", () => {
    leaving = true;
    if (rfb) rfb.disconnect();
});
reconnectButton.addEventListener("click", () => { retries = 0; connect(); });
document.getElementById("clipboard-toggle").addEventListener("click", (event) => {
    clipboardPanel.hidden = !clipboardPanel.hidden;
    event.target.setAttribute("aria-expanded", String(!clipboardPanel.hidden));
});
document.getElementById("clipboard-send").addEventListener("click", () => {
    if (rfb) rfb.clipboardPasteFrom(clipboardText.value);
});

connect();
watchExpiration();
setInterval(watchExpiration, 15000);
