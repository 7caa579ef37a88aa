// Watching a desktop: the WAT's WebSocket (JSON until {ready}, then RFB) handed to noVNC.
// View only is enforced by the server (wat/rfb_input.py); viewOnly here keeps the page honest.
import RFB from "/wat/vendor/novnc/core/rfb.js";

const spy = document.getElementById("spy");
const statusLine = document.getElementById("spy-status");
const interactive = spy.dataset.interactive === "1";

function say(text, state) {
    statusLine.textContent = text;
    spy.dataset.state = state;
}

const ws = new WebSocket(`wss://${location.host}/wat/vms/${encodeURIComponent(spy.dataset.vm)}` +
                         `/spy/tunnel${interactive ? "?interactive=1" : ""}`);
ws.binaryType = "arraybuffer";
let failure = null;
ws.onmessage = (event) => {
    if (typeof event.data !== "string") return;
    const message = JSON.parse(event.data);
    if (message.error) failure = message.error;
    if (message.ready) {
        const rfb = new RFB(document.getElementById("spy-screen"), ws, {shared: true});
        rfb.viewOnly = !interactive;
        rfb.scaleViewport = true;   // the user's screen, whatever its size, in the page
        rfb.addEventListener("connect", () => say(interactive ? "Connected" : "Watching", "connected"));
        window.qvdSpy = {rfb};
    }
};
ws.addEventListener("close", () => {
    if (failure) say(failure, "error");
    else if (spy.dataset.state === "connected") say("The desktop's session ended", "ended");
    else say("The desktop could not be watched", "error");
});
