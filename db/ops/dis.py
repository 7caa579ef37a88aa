"""di add|del|list|tag|untag|block|unblock|propset|propget|propdel."""
import os
import shutil

from sqlalchemy import delete, func, literal, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from qvd.db.images import DEFAULT, HEAD, next_version, osf_has_tag, tag_di, untag_di
from qvd.db.models import Di, DiTag, Osf, Tenant
from qvd.db.names import safe_file_name

from .errors import BadRequest, DomainError
from .grammar import check_keys, parse_bool, parse_name
from .selection import ObjectView
from .registry import object_kind, verb
from .common import add_block_verbs, add_list_verb
from .osfs import find_osf
from .properties import add_property_verbs

group = object_kind("di", "Disk images of an OSF, named by tags (head, default, versions).")

_tags = (select(func.string_agg(DiTag.tag, aggregate_order_by(literal(" "), DiTag.tag)))
         .where(DiTag.di_id == Di.id).scalar_subquery())
VIEW = ObjectView("di", {"id": Di.id, "tenant": Tenant.name, "osf": Osf.name,
                         "version": Di.version, "path": Di.path, "tags": _tags,
                         "blocked": Di.blocked, "trusted": Di.trusted,
                         "created": Di.created_at},
                  select(Di).join(Osf, Osf.id == Di.osf_id).join(Tenant, Tenant.id == Osf.tenant_id),
                  tenant=Tenant.name, ids={"osf_id": Osf.id, "tenant_id": Tenant.id})


def images_dir(admin) -> str:
    return os.path.join(admin.cfg.get("path.storage.root"), "images")


def _store_image(admin, source: str | None, target: str) -> None:
    """The image into the store under a temporary name, renamed once whole: a copy or an
    upload cut short leaves nothing behind."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.exists(target):
        raise DomainError(f"{target} already exists in the image store")
    partial = target + ".part"
    try:
        if source is not None:
            shutil.copyfile(source, partial)
        else:
            with open(partial, "wb") as out:
                admin.upload.save(out)
        os.replace(partial, target)
    except BaseException as exc:
        if os.path.exists(partial):
            os.unlink(partial)
        if isinstance(exc, OSError):
            raise DomainError(f"cannot write the image into {os.path.dirname(target)}: "
                              f"{exc.strerror}") from None
        raise


def _image_source(admin, call) -> tuple[str | None, str]:
    """(a file on the node or None for the upload, the name the image is stored under).
    path= reads a file as the node's root: only qvd-admin on the node may name one."""
    if admin.upload is not None:
        if "path" in call.args:
            raise BadRequest("give either path= or an upload, not both")
        return None, admin.upload.name
    if "path" not in call.args:
        raise BadRequest("missing path=... in arguments")
    if not admin.local_files:
        raise BadRequest("path= names a file on the node, which only qvd-admin on the node "
                         "may read; upload the image instead")
    if not os.path.isfile(call.args["path"]):
        raise DomainError(f"image file not found: {call.args['path']}")
    return call.args["path"], os.path.basename(call.args["path"])


@verb(group, "add", "Add a DI: path=IMAGE_FILE osf=NAME [version=V] [trusted=0|1]. The file is "
                    "copied into the image store and tagged with its version, 'head', and "
                    "'default' if the OSF has none. trusted=1: the image may carry device nodes "
                    "and setuid/setgid files, and its lxc/fstab and lxc/config-extra are used "
                    "unchecked (when their vm.lxc.* flags allow them).")
def add(admin, call):
    check_keys(call.args, ("path", "osf", "version", "trusted"), ("osf",))
    source, file_name = _image_source(admin, call)
    trusted = parse_bool(call.args.get("trusted", "0"), "trusted")
    if "version" in call.args:
        parse_name("DI version", call.args["version"])
    target = None
    try:
        with admin.session() as s:
            osf = find_osf(admin, s, call.args["osf"], call.tenant)
            version = call.args.get("version") or next_version(s, osf.id)
            di = Di(osf_id=osf.id, version=version, trusted=trusted,
                    path=f"{osf.id}-{version}-{safe_file_name(file_name)}")
            s.add(di)
            s.flush()
            tags = [version, HEAD] + ([] if osf_has_tag(s, osf.id, DEFAULT) else [DEFAULT])
            for tag in tags:
                tag_di(s, di, tag)
            admin.audit(s, "di", "add", call, [di.id], osf.tenant_id)
            target = os.path.join(images_dir(admin), di.path)
            _store_image(admin, source, target)
    except BaseException:
        if target and os.path.exists(target):
            os.unlink(target)  # the row was not committed: do not leave its file behind
        raise
    admin.say(f"di {di.id} added to osf '{osf.name}' as {di.path}, tags: {' '.join(tags)}"
          + (", trusted" if trusted else ""))


def _retag_head(s, osf_ids) -> None:
    """After deleting DIs, `head` moves to the newest DI each OSF still has."""
    for osf_id in osf_ids:
        newest = s.scalar(select(Di).where(Di.osf_id == osf_id).order_by(Di.id.desc()).limit(1))
        if newest is not None:
            tag_di(s, newest, HEAD)


@verb(group, "del", "Delete the DIs chosen by -f and their image files "
                    "(a DI a running VM uses cannot be deleted).")
def delete_(admin, call):
    check_keys(call.args, ())
    with admin.session() as s:
        ids = VIEW.ids(s, call)
        gone = s.execute(delete(Di).where(Di.id.in_(ids)).returning(Di.osf_id, Di.path)).all()
        _retag_head(s, {osf_id for osf_id, _ in gone})
        admin.audit(s, "di", "del", call, ids)
    for _, path in gone:
        try:
            os.unlink(os.path.join(images_dir(admin), path))
        except FileNotFoundError:
            pass
    admin.say(f"{len(ids)} di(s) deleted")


def _one_di(s, call) -> Di:
    ids = VIEW.ids(s, call)
    if len(ids) != 1:
        raise DomainError(f"the filter matches {len(ids)} DIs; a tag names exactly one")
    return s.get(Di, ids[0])


@verb(group, "tag", "Tag the DI chosen by -f: tag=NAME [fixed=1]. The tag moves from the "
                    "OSF's DI that had it; VMs using the tag get this DI at their next start.")
def tag(admin, call):
    check_keys(call.args, ("tag", "fixed"), ("tag",))
    parse_name("DI tag", call.args["tag"])
    with admin.session() as s:
        di = _one_di(s, call)
        tag_di(s, di, call.args["tag"], parse_bool(call.args.get("fixed", "0"), "fixed"))
        admin.audit(s, "di", "tag", call, [di.id])
    admin.say(f"di {di.id} tagged '{call.args['tag']}'")


@verb(group, "untag", "Remove tag=NAME from the DI chosen by -f.")
def untag(admin, call):
    check_keys(call.args, ("tag",), ("tag",))
    with admin.session() as s:
        di = _one_di(s, call)
        untag_di(s, di, call.args["tag"])
        admin.audit(s, "di", "untag", call, [di.id])
    admin.say(f"tag '{call.args['tag']}' removed from di {di.id}")


add_list_verb(group, VIEW)
add_block_verbs(group, VIEW, Di.blocked, "VMs do not start from them")
add_property_verbs(group, VIEW)
