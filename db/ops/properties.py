"""propset / propget / propdel, the same for users, VMs, hosts, OSFs and DIs."""
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from qvd.db.models import PROPERTY_MODELS

from .errors import BadRequest
from .registry import verb
from .selection import show_page


def add_property_verbs(group, view) -> None:
    model = PROPERTY_MODELS[view.name]

    @verb(group, "propset", f"Set properties key=value ... on the {view.name}s chosen by -f.")
    def propset(admin, call):
        if not call.args:
            raise BadRequest("give at least one key=value")
        with admin.session() as s:
            ids = view.ids(s, call)
            for owner in ids:
                for key, value in call.args.items():
                    stmt = insert(model).values(owner_id=owner, key=key, value=value)
                    s.execute(stmt.on_conflict_do_update(index_elements=["owner_id", "key"],
                                                         set_={"value": value}))
            admin.audit(s, view.name, "propset", call, ids)
        admin.say(f"{len(call.args)} propert(ies) set on {len(ids)} {view.name}(s)")

    @verb(group, "propget", f"Show properties of the {view.name}s chosen by -f "
                            "(all, or only the keys named).", lists=True, words=True)
    def propget(admin, call):
        keys = list(call.args)
        with admin.session() as s:
            ids = view.ids(s, call)
            stmt = select(model.owner_id, model.key, model.value).where(model.owner_id.in_(ids))
            if keys:
                stmt = stmt.where(model.key.in_(keys))
            rows = [{"id": o, "key": k, "value": v}
                    for o, k, v in s.execute(stmt.order_by(model.owner_id, model.key))]
        show_page(admin, call, ["id", "key", "value"], rows)

    @verb(group, "propdel", f"Delete the named properties (key ...) from the "
                            f"{view.name}s chosen by -f.", words=True)
    def propdel(admin, call):
        if not call.args:
            raise BadRequest("name the properties to delete")
        with admin.session() as s:
            ids = view.ids(s, call)
            s.execute(delete(model).where(model.owner_id.in_(ids),
                                          model.key.in_(list(call.args))))
            admin.audit(s, view.name, "propdel", call, ids)
        admin.say(f"properties deleted from {len(ids)} {view.name}(s)")
