"""The WAT's lists: /wat/<resource> with the CLI's filters (* and ? wildcards), sorting,
pages and a choice of columns, and actions on a selection or on everything the filter
matches, confirmed with the number of objects they change.

The query string is the list's state, so a list can be bookmarked and reloaded:
?f.name=lab-*&order=-name&offset=50&columns=id&columns=name"""
from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from .catalog import ACTIONS, COLUMNS, DETAILED, KEY_FIELDS, action
from .forms import offered
from .web import (TITLES, PageError, acting, allowed, is_htmx, object_of, page, render,
                  rows_of, run)

router = APIRouter(prefix="/wat")
PAGE = 50


class ListState:
    """What a list shows, read from a query string or a posted form (the same names)."""

    def __init__(self, values, fields: list[str] | None = None):
        self.filters = {key[2:]: value.strip() for key, value in values.items()
                        if key.startswith("f.") and value.strip()}
        self.order = values.get("order", "")
        self.offset = max(0, _number(values.get("offset")))
        self.columns = values.getlist("columns") if hasattr(values, "getlist") else []
        self.tenant = values.get("tenant") or None

    def query(self, **changes) -> str:
        """The query string of this list with some values changed (links to sort, page)."""
        values = {"order": self.order, "offset": self.offset, "tenant": self.tenant or "",
                  **{f"f.{k}": v for k, v in self.filters.items()}, **changes}
        pairs = [(k, v) for k, v in values.items() if v not in ("", None, 0)]
        pairs += [("columns", c) for c in self.columns]
        return urlencode(pairs)

    def sorted_by(self, field: str) -> str:
        """The order a click on the column's header asks for: ascending, then descending."""
        return f"-{field}" if self.order == field else field


def _number(text) -> int:
    try:
        return int(text or 0)
    except ValueError:
        raise PageError(422, f"not a number: '{text}'") from None


def _listing(request: Request, resource: str, values) -> dict:
    ctx = acting(request)
    obj = object_of(resource)
    state = ListState(values)
    fields, rows, total = rows_of(ctx, f"{obj} list", filters=state.filters,
                                  tenant=state.tenant,
                                  order_by=[state.order] if state.order else [],
                                  offset=state.offset, limit=PAGE)
    shown = [c for c in state.columns if c in fields] or \
        [c for c in COLUMNS.get(resource, fields) if c in fields] or fields
    actions = [a for a in ACTIONS.get(resource, [])
               if allowed(ctx, a.operation(obj), a.argument_keys())]
    return dict(ctx=ctx, resource=resource, obj=obj, kind=obj.replace(" ", "-"),
                title=TITLES[resource], fields=fields, shown=shown, rows=rows, total=total,
                state=state, page_size=PAGE, actions=actions,
                detailed=resource in DETAILED and bool(fields) and fields[0] == "id",
                can_add=offered(ctx, f"{obj} add"),
                # a page fetched again keeps what was ticked
                checked=set(values.getlist("id")) if hasattr(values, "getlist") else set())


@router.get("/{resource}", response_class=HTMLResponse)
def list_page(request: Request, resource: str):
    values = _listing(request, resource, request.query_params)
    if is_htmx(request) and request.headers.get("hx-target") == "list-table":
        return render(request, "list_table.html", **values)
    return page(request, values.pop("ctx"), "list.html", done=request.query_params.get("done"),
                **values)


@router.post("/{resource}/act", response_class=HTMLResponse)
async def act(request: Request, resource: str):
    """Two steps: the confirmation (how many objects, and the argument retag asks for), then
    the operation itself; both are checked by the domain layer, the second also acts."""
    form = await request.form()
    ctx = acting(request)
    obj = object_of(resource)
    chosen_action = action(resource, form.get("verb", ""))
    if chosen_action is None:
        raise PageError(404, f"no action '{form.get('verb')}' on {TITLES[resource]}")
    state = ListState(form)
    scope = form.get("scope", "selected")
    call = {"tenant": state.tenant}
    if scope == "filter":
        # Everything the filter matches; no filter at all means every object (the count
        # in the confirmation says how many that is).
        call["filters"] = state.filters or {KEY_FIELDS.get(resource, "id"): "*"}
    else:
        ids = [i if resource in KEY_FIELDS else _number(i) for i in form.getlist("id")]
        if not ids:
            raise PageError(422, "select at least one row, or act on the filter")
        call["chosen"] = ids
    operation = chosen_action.operation(obj)
    if form.get("confirmed") != "yes":
        if not allowed(ctx, operation, chosen_action.argument_keys()):
            raise PageError(403, f"your role does not allow '{operation}'")
        count = rows_of(ctx, f"{obj} list", limit=0, **call)[2]
        return render(request, "confirm.html", ctx=ctx, resource=resource, obj=obj,
                      action=chosen_action, count=count, scope=scope, form=form,
                      state=state, title=TITLES[resource])
    args = {}
    if chosen_action.asks:
        args[chosen_action.asks] = form.get(chosen_action.asks, "").strip()
    done = run(ctx, operation, args=args, **call)  # refused (403, audit-logged) if forbidden
    reply = render(request, "message.html", message="; ".join(done.said) or "done")
    reply.headers["HX-Trigger"] = "wat-refresh"  # the list reloads its rows
    return reply
