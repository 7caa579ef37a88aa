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
                rollouts=rows_of(ctx, "vm rollout")[1], sees_vms=allowed(ctx, "vm list"),
                sees_hosts=allowed(ctx, "host list"))


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request):
    ctx = acting(request)
    return page(request, ctx, "dashboard.html", title="Dashboard", **panel_values(ctx))


@router.get("/dashboard/panel", response_class=HTMLResponse)
def panel(request: Request):
    ctx = acting(request)
    return render(request, "dashboard_panel.html", ctx=ctx, **panel_values(ctx))
