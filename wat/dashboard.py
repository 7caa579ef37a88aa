"""The dashboard: VMs by state, the nodes with their lease age and load, who is connected,
what went wrong lately (VMs with a last_error, nodes lost or fenced) and image rollouts in
progress. Read through the domain layer's listings, so an administrator of one tenant sees
its tenant only; its panel is fetched again when a change is pushed (not on a timer)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from qvd.db.states import VM_STATES

from .web import acting, allowed, page, render, rows_of

router = APIRouter(prefix="/wat")
SHOWN = 10  # rows of each short list
TROUBLED_HOSTS = ("lost",)  # a fenced node is lost to the others, with its reason


def _count(ctx, operation: str, **filters) -> int:
    return rows_of(ctx, operation, filters=filters, limit=0)[2]


def _rollouts(ctx) -> list[dict]:
    """Per tag that VMs follow: how many running VMs still run another image than the one the
    tag names now (they take it at their next start)."""
    if not (allowed(ctx, "di list") and allowed(ctx, "vm list")):
        return []
    _, dis, _ = rows_of(ctx, "di list")
    rollouts = []
    for di in dis:
        for tag in (di["tags"] or "").split():
            match = {"osf": di["osf"], "di_tag": tag, "state": "running", "tenant": di["tenant"]}
            running = _count(ctx, "vm list", **match, di="?*")  # those with an image
            current = _count(ctx, "vm list", **match, di=di["version"])
            if running > current:
                rollouts.append({"osf": di["osf"], "tag": tag, "version": di["version"],
                                 "tenant": di["tenant"], "behind": running - current,
                                 "running": running})
    return rollouts


def panel_values(ctx) -> dict:
    states = {state: _count(ctx, "vm list", state=state) for state in VM_STATES}
    _, hosts, _ = rows_of(ctx, "host list", order_by=["name"])
    _, errors, errors_total = rows_of(ctx, "vm list", filters={"last_error": "?*"},
                                      order_by=["-id"], limit=SHOWN)
    _, connected, connected_total = rows_of(ctx, "vm list", filters={"user_state": "connected"},
                                            order_by=["name"], limit=SHOWN)
    troubled = [h for h in hosts if h["state"] in TROUBLED_HOSTS or h["last_error"]]
    return dict(states={s: n for s, n in states.items() if n}, vm_total=sum(states.values()),
                hosts=hosts, troubled=troubled, errors=errors, errors_total=errors_total,
                connected=connected, connected_total=connected_total,
                rollouts=_rollouts(ctx), sees_vms=allowed(ctx, "vm list"),
                sees_hosts=allowed(ctx, "host list"))


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request):
    ctx = acting(request)
    return page(request, ctx, "dashboard.html", title="Dashboard", **panel_values(ctx))


@router.get("/dashboard/panel", response_class=HTMLResponse)
def panel(request: Request):
    ctx = acting(request)
    return render(request, "dashboard_panel.html", ctx=ctx, **panel_values(ctx))
