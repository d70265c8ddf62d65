"""Label and field selectors, as kube-apiserver parses and matches them."""
import re

from .errors import ApiError

def parse_label_selector(text):
    reqs = []
    for part in re.findall(r"[^,(]+(?:\([^)]*\))?", text or ""):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$", part)
        if m:
            reqs.append((m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}))
        elif "!=" in part:
            k, v = part.split("!=", 1); reqs.append((k.strip(), "!=", v.strip()))
        elif "==" in part or "=" in part:
            k, v = re.split("==?", part, 1); reqs.append((k.strip(), "=", v.strip()))
        elif part.startswith("!"):
            reqs.append((part[1:].strip(), "!", None))
        else:
            reqs.append((part, "exists", None))
    return reqs

def labels_match(reqs, labels):
    for k, op, v in reqs:
        have = labels.get(k)
        if op == "=" and have != v: return False
        if op == "!=" and have == v: return False
        if op == "in" and have not in v: return False
        if op == "notin" and have in v: return False
        if op == "exists" and k not in labels: return False
        if op == "!" and k in labels: return False
    return True

def field_match(text, obj):
    for part in (text or "").split(","):
        if not part:
            continue
        neg = "!=" in part
        k, v = re.split("!=|==?", part, 1)
        path = {"metadata.name": ("metadata", "name"), "metadata.namespace": ("metadata", "namespace")}.get(k.strip())
        if not path:
            raise ApiError(400, "BadRequest", 'field label not supported: "%s"' % k.strip())
        have = obj.get(path[0], {}).get(path[1], "")
        if (have == v.strip()) == neg:
            return False
    return True
