"""Reading rendered manifests in the packaging tests (kustomize, Helm)."""


def one(docs, kind, name=None):
    """The one object of `kind` (and `name`) among `docs`; fails unless
    there is exactly one."""
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if len(found) != 1:
        raise AssertionError("expected one %s%s, found %d" % (kind, " " + name if name else "", len(found)))
    return found[0]
