// The desktops list follows its VMs' states (a stop, a start elsewhere) without a reload.
async function refresh() {
    try {
        const reply = await fetch("/portal/desktops.json", {credentials: "same-origin"});
        if (!reply.ok) return;
        for (const desktop of await reply.json()) {
            const item = document.querySelector(`.desktop[data-id="${desktop.id}"]`);
            if (!item) continue;
            const state = item.querySelector("[data-state]");
            state.textContent = desktop.state + (desktop.blocked ? " (blocked)" : "");
            state.className = `state state-${desktop.state}`;
            item.querySelector("button.stop").disabled = desktop.state === "stopped";
        }
    } catch (error) {
        // offline for a moment: the next round tells
    }
}
setInterval(refresh, 3000);
