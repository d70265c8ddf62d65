"""Request bodies: JSON decoded with the depth limit kube-apiserver has."""
import json
import re

from .errors import ApiError

# kube-apiserver decodes JSON with Go's encoding/json scanner (through
# sigs.k8s.io/json), which refuses nesting deeper than 10,000 levels
# ("exceeded max depth"); anything up to that is stored and served back
# whole. A custom resource with x-kubernetes-preserve-unknown-fields may be
# that deep. apiserver.py raises Python's recursion limit and thread stacks
# so that json, deepcopy and the patch code follow it there.
MAX_JSON_DEPTH = 10000
# A whole string (its escapes inside it), or a bracket.
_STRING_OR_BRACKET = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def json_depth_error(raw):
    """None when raw nests at most MAX_JSON_DEPTH deep; else Go's message
    for the first bracket past it (brackets inside strings do not count)."""
    depth = 0
    for m in _STRING_OR_BRACKET.finditer(raw):
        c = m.group()
        if c in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return "json: offset %d: invalid character '%s' exceeded max depth" % (m.start() + 1, c.decode())
        elif c in (b"]", b"}"):
            depth -= 1
    return None


def decode_json(raw, what):
    """The JSON of a request body, or a 400 as kube-apiserver answers it."""
    problem = json_depth_error(raw)
    if problem:
        raise ApiError(400, "BadRequest", "%s: %s" % (what, problem))
    try:
        return json.loads(raw)
    except ValueError as e:
        raise ApiError(400, "BadRequest", "%s: %s" % (what, e))
