"""Objects, one resourceVersion counter, and a bounded event history (what
watches replay and what 410 Gone is measured against)."""
import collections
import copy
import datetime
import threading
import uuid

from .catalogue import BUILTIN
from .errors import ApiError

def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    def __init__(self, history):
        self.lock = threading.Condition()
        self.rv = 100
        self.objects = {}  # (qualified, ns, name) -> obj
        self.history = collections.deque(maxlen=history)  # (rv, qualified, type, obj)
        self.oldest = self.rv  # watches from below this get 410
        self.resources = {r.qualified: r for r in BUILTIN}
        self.watch_epoch = 0  # bumped to cut watches
        # The namespaces every cluster starts with (kube-apiserver makes
        # them at boot): objects can only be created in a namespace that
        # exists (NamespaceLifecycle admission).
        for name in ("default", "kube-node-lease", "kube-public", "kube-system"):
            self.objects[("namespaces", None, name)] = namespace_object(name, self.next_rv())
        self.oldest = self.rv

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def emit(self, res, etype, obj):
        self.history.append((int(obj["metadata"]["resourceVersion"]), res.qualified, etype, copy.deepcopy(obj)))
        if len(self.history) == self.history.maxlen:
            self.oldest = self.history[0][0]
        self.lock.notify_all()

def resource_for(store, group, version, plural):
    r = store.resources.get(plural + "." + group if group else plural)
    if not r or r.version != version:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return r


def namespace_object(name, rv, uid=None):
    """A Namespace as kube-apiserver stores it: the kubernetes.io/metadata.name
    label (set by the server since v1.21), the kubernetes finalizer, Active."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": uid or str(uuid.uuid4()), "resourceVersion": rv,
                         "creationTimestamp": now(), "labels": {"kubernetes.io/metadata.name": name},
                         "managedFields": [{"manager": "kube-apiserver", "operation": "Update", "apiVersion": "v1",
                                            "time": now(), "fieldsType": "FieldsV1",
                                            "fieldsV1": {"f:metadata": {"f:labels": {".": {},
                                                                                  "f:kubernetes.io/metadata.name": {}}}}}]},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
