"""Merge, strategic-merge and JSON patches."""
import copy

from .errors import ApiError

# Strategic merge patch keys of the built-in types (k8s.io/api patchMergeKey).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
              "volumes": "name", "volumeMounts": "mountPath", "imagePullSecrets": "name", "conditions": "type",
              "ownerReferences": "uid", "hostAliases": "ip", "volumeDevices": "devicePath"}
PORT_KEYS = ("containerPort", "port")


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None: out.pop(k, None)
        else: out[k] = merge_patch(out.get(k), v)
    return out

def list_key(field, items):
    if field == "ports":
        for k in PORT_KEYS:
            if items and all(isinstance(i, dict) and k in i for i in items):
                return k
        return None
    return MERGE_KEYS.get(field)

def strategic_merge(target, patch):
    """Strategic merge patch for the cases kubectl sends: maps merge, lists
    with a merge key merge by it, $patch: delete/replace, $setElementOrder
    and $retainKeys directives are honoured or ignored safely."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    out = copy.deepcopy(target)
    for k, v in patch.items():
        if k.startswith("$setElementOrder/") or k in ("$retainKeys", "$patch"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            out[field] = [x for x in out.get(field, []) if x not in v]
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and isinstance(out.get(k), list) and list_key(k, out[k] + v):
            key = list_key(k, out[k] + v)
            merged = copy.deepcopy(out[k])
            for item in v:
                idx = next((i for i, e in enumerate(merged) if e.get(key) == item.get(key)), None)
                if isinstance(item, dict) and item.get("$patch") == "delete":
                    if idx is not None: merged.pop(idx)
                elif idx is None:
                    merged.append({a: b for a, b in item.items() if a != "$patch"})
                else:
                    merged[idx] = strategic_merge(merged[idx], item)
            out[k] = merged
        elif isinstance(v, dict):
            out[k] = strategic_merge(out.get(k) if isinstance(out.get(k), dict) else {}, v)
        else:
            out[k] = copy.deepcopy(v)
    return out

def json_pointer(path):
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]

def json_patch(doc, ops):
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = json_pointer(op["path"])
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1] if parts else None
        kind = op["op"]
        if kind == "add":
            if isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), op["value"])
            else:
                parent[last] = op["value"]
        elif kind == "replace":
            if isinstance(parent, list): parent[int(last)] = op["value"]
            else: parent[last] = op["value"]
        elif kind == "remove":
            if isinstance(parent, list): parent.pop(int(last))
            else: del parent[last]
        elif kind == "test":
            value = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if value != op["value"]:
                raise ApiError(422, "Invalid", "test operation failed at " + op["path"])
        else:
            raise ApiError(400, "BadRequest", "unsupported JSON patch op " + kind)
    return doc
