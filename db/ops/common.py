"""Verbs that work the same for several objects: list, del, block/unblock."""
from sqlalchemy import delete, update

from .grammar import check_keys
from .selection import list_objects
from .registry import verb


def _primary_key(model):
    return getattr(model, list(model.__table__.primary_key.columns)[0].key)


def add_list_verb(group, view) -> None:
    @verb(group, "list", f"List {view.name}s (filter with -f, e.g. -f name=lab-*).", lists=True)
    def list_(admin, call):
        check_keys(call.args, ())
        list_objects(admin, view, call)


def add_delete_verb(group, view, model, condition: str = "", before=None, after=None) -> None:
    """before(admin, session, ids) may refuse with DomainError; after(rows) runs once committed."""
    @verb(group, "del", f"Delete the {view.name}s chosen by -f{condition}.")
    def delete_(admin, call):
        check_keys(call.args, ())
        with admin.session() as s:
            ids = view.ids(s, call)
            if before is not None:
                before(admin, s, ids)
            gone = s.execute(delete(model).where(_primary_key(model).in_(ids))
                             .returning(model)).scalars().all()
            admin.audit(s, view.name, "del", call, ids)
        if after is not None:
            after(admin, gone)
        admin.say(f"{len(ids)} {view.name}(s) deleted")


def add_block_verbs(group, view, column, effect: str, before=None) -> None:
    """column: the `blocked` column of the table whose key is the view's id;
    before(admin, session, ids) may refuse with DomainError."""
    table = column.class_

    def set_blocked(admin, call, blocked: bool):
        check_keys(call.args, ())
        action = "block" if blocked else "unblock"
        with admin.session() as s:
            ids = view.ids(s, call)
            if before is not None:
                before(admin, s, ids)
            s.execute(update(table).where(_primary_key(table).in_(ids)).values(blocked=blocked))
            admin.audit(s, view.name, action, call, ids)
        admin.say(f"{len(ids)} {view.name}(s) {action}ed")

    @verb(group, "block", f"Block the {view.name}s chosen by -f: {effect}.")
    def block(admin, call):
        set_blocked(admin, call, True)

    @verb(group, "unblock", f"Unblock the {view.name}s chosen by -f.")
    def unblock(admin, call):
        set_blocked(admin, call, False)
