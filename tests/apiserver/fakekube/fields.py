"""Field ownership (metadata.managedFields) and server-side apply, as
kube-apiserver's structured-merge-diff keeps them, for the shapes kubectl
and kubetrail meet:

- every write records which fields its manager set: a create owns every
  field of the object, an update the fields whose values it changed (taken
  from whoever owned them; no conflict for an update), an apply exactly the
  fields of its configuration;
- an apply that sets a field another manager owns to a different value
  fails with 409 Conflict naming the manager and the field, unless
  `force=true` takes the field over; the same value is shared ownership;
- fields an applier set before and leaves out now are removed from the
  object, unless another manager owns them too;
- keyed lists (containers by name, ports by port and protocol, ...) merge
  element by element (fieldsV1 "k:{...}" entries), other lists are atomic.

Field paths are tuples of fieldsV1 keys: ("f:spec", "f:replicas"),
("f:spec", "f:containers", 'k:{"name":"web"}', "f:image"). A list element
itself is a path too (fieldsV1 "." inside the element).
"""
import copy
import json

from .errors import ApiError
from .patch import PORT_KEYS, list_key as merge_list_key

# Keyed ("associative") lists of the built-in types are strategic merge's
# (patch.MERGE_KEYS); apply keys ports by port and protocol together, and
# readinessGates by conditionType besides.
APPLY_ONLY_KEYS = {"readinessGates": "conditionType"}
# Never owned: identity and what the server writes itself.
SERVER_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                   "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")


def list_keys(field, items):
    """The keys identifying an element of list `field`, or None when the
    list is atomic."""
    key = APPLY_ONLY_KEYS.get(field) or merge_list_key(field, items)
    if not key or not all(isinstance(i, dict) and key in i for i in items):
        return None
    return (key, "protocol") if key in PORT_KEYS else (key,)


def element_key(item, keys):
    return "k:" + json.dumps({k: item[k] for k in keys if k in item}, separators=(",", ":"), sort_keys=True)


def _walk(value, path, out):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _walk(v, path + ("f:" + k,), out)
        return
    if isinstance(value, list) and value and path:
        keys = list_keys(path[-1][2:], value)
        if keys:
            for item in value:
                epath = path + (element_key(item, keys),)
                out.add(epath)
                for k, v in item.items():
                    _walk(v, epath + ("f:" + k,), out)
            return
    out.add(path)  # a scalar, an empty map, or an atomic list


def field_set(obj, sub=None, status_separate=True):
    """The fields of `obj` a manager can own. The status subresource owns
    status only; the main resource everything but status (when status is a
    subresource) and the server's own metadata."""
    out = set()
    if sub == "status":
        if "status" in obj:
            _walk(obj["status"], ("f:status",), out)
        return out
    for k, v in obj.items():
        if k in ("apiVersion", "kind") or (k == "status" and status_separate):
            continue
        if k == "metadata":
            for mk, mv in v.items():
                if mk not in SERVER_METADATA:
                    _walk(mv, ("f:metadata", "f:" + mk), out)
            continue
        _walk(v, ("f:" + k,), out)
    return out


_MISSING = object()


def value_at(obj, path):
    node = obj
    for seg in path:
        if seg.startswith("f:"):
            if not isinstance(node, dict) or seg[2:] not in node:
                return _MISSING
            node = node[seg[2:]]
        else:  # k:{...}
            want = json.loads(seg[2:])
            if not isinstance(node, list):
                return _MISSING
            node = next((i for i in node if isinstance(i, dict) and all(i.get(k) == v for k, v in want.items())),
                        _MISSING)
            if node is _MISSING:
                return _MISSING
    return node


def remove_at(obj, path):
    """Removes the field at `path`, then the maps and lists it leaves empty
    (built-in types are Go structs with omitempty: an empty map is not
    written)."""
    parent = value_at(obj, path[:-1]) if len(path) > 1 else obj
    seg = path[-1]
    if seg.startswith("f:") and isinstance(parent, dict):
        parent.pop(seg[2:], None)
    elif seg.startswith("k:") and isinstance(parent, list):
        want = json.loads(seg[2:])
        parent[:] = [i for i in parent if not (isinstance(i, dict) and all(i.get(k) == v for k, v in want.items()))]
    else:
        return
    if len(path) > 1 and parent in ({}, []) and path[-2].startswith("f:"):
        remove_at(obj, path[:-1])


def to_fields_v1(paths):
    root = {}
    for path in sorted(paths):
        node = root
        for seg in path:
            node = node.setdefault(seg, {})
        if path[-1].startswith("k:"):
            node["."] = {}
    return root


def from_fields_v1(tree, prefix=()):
    out = set()
    for k, v in (tree or {}).items():
        if k == ".":
            out.add(prefix)
            continue
        if not v:
            out.add(prefix + (k,))
        else:
            out |= from_fields_v1(v, prefix + (k,))
    return out


def readable(path):
    """`.spec.containers[name="web"].image`, as conflicts name fields."""
    text = ""
    for seg in path:
        if seg.startswith("f:"):
            text += "." + seg[2:]
        else:
            text += "[" + ",".join("%s=%s" % (k, json.dumps(v)) for k, v in json.loads(seg[2:]).items()) + "]"
    return text


def merge_applied(cur, patch, field=None):
    """The applied configuration over the live object: maps merge, keyed
    lists merge by key (live order, new elements after), the rest is
    replaced."""
    if isinstance(cur, dict) and isinstance(patch, dict):
        out = copy.deepcopy(cur)
        for k, v in patch.items():
            out[k] = merge_applied(cur.get(k), v, k)
        return out
    if isinstance(cur, list) and isinstance(patch, list) and field:
        keys = list_keys(field, cur + patch)
        if keys:
            applied = {element_key(i, keys): i for i in patch}
            out = [merge_applied(i, applied.pop(element_key(i, keys)), None) if element_key(i, keys) in applied
                   else copy.deepcopy(i) for i in cur]
            return out + [copy.deepcopy(i) for i in applied.values()]
    return copy.deepcopy(patch)


def entries(obj):
    return [(m, from_fields_v1(m.get("fieldsV1"))) for m in obj.get("metadata", {}).get("managedFields", [])]


def same_entry(m, manager, operation, sub):
    return m.get("manager") == manager and m.get("operation") == operation and m.get("subresource") == sub


def record(obj, owned, now, status_separate=True):
    """Writes `owned` ([(entry, fields)]) into obj's managedFields: fields
    the object no longer has leave every set; a manager left with none
    leaves the list, as the real server drops it."""
    present = field_set(obj, None, status_separate) | field_set(obj, "status")
    out = []
    for m, fields in owned:
        fields = fields & present
        if not fields:
            continue
        m = dict(m, fieldsType="FieldsV1", fieldsV1=to_fields_v1(fields))
        out.append(m)
    obj["metadata"]["managedFields"] = out


def update_ownership(old, new, manager, sub, now, status_separate=True):
    """An update (create, replace, patch, scale, status) by `manager`: it
    owns what it changed, taken from the others without conflict."""
    new_fields = field_set(new, sub, status_separate)
    if old is None:
        changed = new_fields
        owned = []
    else:
        changed = {p for p in new_fields if value_at(old, p) != value_at(new, p)}
        owned = [(m, f - changed) for m, f in entries(old) if not same_entry(m, manager, "Update", sub)]
    mine = next((f for m, f in (entries(old) if old else []) if same_entry(m, manager, "Update", sub)), set())
    entry = {"manager": manager, "operation": "Update", "apiVersion": new.get("apiVersion", ""), "time": now}
    if sub:
        entry["subresource"] = sub
    owned.append((entry, mine | changed))
    record(new, owned, now, status_separate)


def apply(cur, patch, manager, force, now, status_separate=True):
    """Server-side apply of `patch` by `manager` onto `cur` (None: create).
    Returns the new object with its managedFields; raises 409 on conflicts."""
    applied = field_set(patch, None, status_separate)
    entry = {"manager": manager, "operation": "Apply", "apiVersion": patch.get("apiVersion", ""), "time": now}
    if cur is None:
        new = copy.deepcopy(patch)
        new.setdefault("metadata", {})
        record(new, [(entry, applied)], now, status_separate)
        return new
    owned = entries(cur)
    conflicts = []  # (manager entry, path)
    for m, fields in owned:
        if same_entry(m, manager, "Apply", None):
            continue
        for p in sorted(applied & fields):
            if p[-1].startswith("k:"):
                continue  # owning an element is not owning its values
            if value_at(cur, p) != value_at(patch, p):
                conflicts.append((m, p))
    if conflicts and not force:
        raise conflict_error(conflicts)
    taken = {p for _, p in conflicts}
    before = next((f for m, f in owned if same_entry(m, manager, "Apply", None)), set())
    others = [(m, f - taken) for m, f in owned if not same_entry(m, manager, "Apply", None)]
    new = merge_applied(cur, {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")})
    still_owned = set().union(*(f for _, f in others)) if others else set()
    for p in sorted(before - applied - still_owned, key=len, reverse=True):
        remove_at(new, p)
    record(new, others + [(entry, applied)], now, status_separate)
    return new


def conflict_error(conflicts):
    by_manager = {}
    for m, p in conflicts:
        by_manager.setdefault((m.get("manager"), m.get("apiVersion", "")), []).append(p)
    if len(conflicts) == 1:
        (mgr, ver), paths = next(iter(by_manager.items()))
        message = 'Apply failed with 1 conflict: conflict with "%s" using %s: %s' % (mgr, ver, readable(paths[0]))
    else:
        parts = []
        for (mgr, ver), paths in by_manager.items():
            parts.append('conflicts with "%s" using %s:\n%s' % (mgr, ver, "\n".join("- " + readable(p) for p in paths)))
        message = "Apply failed with %d conflicts: %s" % (len(conflicts), "\n".join(parts))
    causes = [{"type": "FieldManagerConflict", "message": 'conflict with "%s" using %s' % (m.get("manager"),
                                                                                        m.get("apiVersion", "")),
               "field": readable(p)} for m, p in conflicts]
    return ApiError(409, "Conflict", message, {"causes": causes})
