"""Reads and writes of objects: get, list (pages, selectors, Table), create,
replace, patch, scale, delete."""
import base64
import copy
import datetime
import json
import time
import uuid

from . import fields
from .catalogue import Resource, shaped
from .errors import ApiError
from .jsonbody import decode_json
from .patch import json_patch, merge_patch, strategic_merge
from .selectors import field_match, labels_match, parse_label_selector
from .store import now

class Resources:
    """Mixed into the HTTP handler."""

    def get(self, res, ns, name):
        store = self.server.store
        with store.lock:
            obj = store.objects.get((res.qualified, ns, name))
            if obj is None:
                raise ApiError(404, "NotFound", '%s "%s" not found' % (res.qualified, name),
                               {"name": name, "group": res.group, "kind": res.plural})
            return self.full(res, obj)

    def full(self, res, obj):
        return shaped(res, copy.deepcopy(obj))

    def selected(self, res, ns, q):
        store = self.server.store
        reqs = parse_label_selector(q.get("labelSelector"))
        out = []
        for (qual, ons, name), obj in sorted(store.objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])):
            if qual != res.qualified or (ns is not None and ons != ns):
                continue
            if not labels_match(reqs, obj["metadata"].get("labels", {})) or not field_match(q.get("fieldSelector"), obj):
                continue
            out.append(obj)
        return out

    def list(self, res, ns, q):
        store = self.server.store
        if self.server.list_delay_ms:
            time.sleep(self.server.list_delay_ms / 1000.0)
        with store.lock:
            items = self.selected(res, ns, q)
            list_rv = str(store.rv)
            start = 0
            if q.get("continue"):
                try:
                    token = json.loads(base64.b64decode(q["continue"]))
                    start, list_rv = int(token["start"]), token["rv"]
                except (ValueError, KeyError):
                    raise ApiError(400, "BadRequest", "invalid continue token")
                if int(list_rv) < store.oldest:
                    raise ApiError(410, "Expired", "The provided continue parameter is too old to display a consistent "
                                   "list result. You can start a new list without the continue parameter.")
            limit = int(q.get("limit") or 0)
            page = items[start:start + limit] if limit else items[start:]
            meta = {"resourceVersion": list_rv}
            if limit and start + limit < len(items):
                meta["continue"] = base64.b64encode(json.dumps({"start": start + limit, "rv": list_rv}).encode()).decode()
                meta["remainingItemCount"] = len(items) - start - limit
            items = [shaped(res, copy.deepcopy(o), in_list=True) for o in page]
        if "as=Table" in self.headers.get("Accept", ""):
            return self.send_json(200, self.table(res, items, meta))
        self.send_json(200, {"kind": res.kind + "List", "apiVersion": res.api_version, "metadata": meta, "items": items})

    def table(self, res, items, meta):
        rows = []
        for o in items:
            created = o["metadata"].get("creationTimestamp", now())
            age = int(time.time() - datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=datetime.timezone.utc).timestamp())
            rows.append({"cells": [o["metadata"]["name"], "%ds" % max(age, 0)],
                         "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                    "metadata": o["metadata"]}})
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                "columnDefinitions": [{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0},
                                      {"name": "Age", "type": "string", "format": "", "description": "", "priority": 0}],
                "rows": rows}

    # -- writes ----------------------------------------------------------
    def manager(self, q, default):
        return q.get("fieldManager") or default

    def fold_string_data(self, res, obj):
        """A Secret's stringData is write-only: merged into data, base64
        encoded, over keys of the same name; never stored or returned."""
        if res.kind == "Secret" and res.group == "" and isinstance(obj.get("stringData"), dict):
            data = obj.get("data") or {}
            for k, v in obj.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data

    def create(self, res, ns, q):
        store = self.server.store
        obj = self.body_json()
        self.fold_string_data(res, obj)
        md = obj.setdefault("metadata", {})
        if not md.get("name") and md.get("generateName"):
            md["name"] = md["generateName"] + uuid.uuid4().hex[:5]
        name = md.get("name")
        if not name:
            raise ApiError(422, "Invalid", "%s.%s is invalid: metadata.name: Required value" % (res.kind, res.group))
        if res.namespaced:
            ns = ns or md.get("namespace") or "default"
            md["namespace"] = ns
        with store.lock:
            key = (res.qualified, ns, name)
            if key in store.objects:
                raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (res.qualified, name),
                               {"name": name, "group": res.group, "kind": res.plural})
            obj["apiVersion"], obj["kind"] = res.api_version, res.kind
            fields.update_ownership(None, obj, self.manager(q, self.default_manager()), None, now(), res.status)
            out = self.insert(res, ns, name, obj, q)
        self.send_json(201, out)

    def insert(self, res, ns, name, obj, q):
        """A new object stored (or, on a dry run, only shaped)."""
        store = self.server.store
        # NamespaceLifecycle admission: nothing is created in a namespace that
        # does not exist (dry runs are admitted the same way).
        if res.namespaced and ("namespaces", None, ns) not in store.objects:
            raise ApiError(404, "NotFound", 'namespaces "%s" not found' % ns, {"name": ns, "kind": "namespaces"})
        md = obj["metadata"]
        if res.kind == "Namespace" and res.group == "":  # what the server adds to every namespace
            md.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        if res.namespaced:
            md["namespace"] = ns
        md["name"] = name
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now()
        md["generation"] = 1
        if q.get("dryRun"):
            return self.full(res, obj)
        md["resourceVersion"] = store.next_rv()
        if res.kind == "CustomResourceDefinition":
            self.register_crd(obj)
        store.objects[(res.qualified, ns, name)] = obj
        store.emit(res, "ADDED", obj)
        return self.full(res, obj)

    def default_manager(self):
        ua = self.headers.get("User-Agent", "unknown")
        return ua.split("/")[0]

    def register_crd(self, crd):
        spec = crd.get("spec", {})
        names = spec.get("names", {})
        versions = [v for v in spec.get("versions", []) if v.get("served", True)]
        if not versions or not names.get("plural") or not names.get("kind"):
            raise ApiError(422, "Invalid", "CustomResourceDefinition is invalid: spec.names and spec.versions are required")
        storage = next((v for v in versions if v.get("storage")), versions[0])
        r = Resource(spec["group"], storage["name"], names["plural"], names["kind"], spec.get("scope") == "Namespaced",
                     names.get("shortNames", []), names.get("singular"),
                     status="status" in storage.get("subresources", {}))
        r.schema = storage.get("schema", {}).get("openAPIV3Schema")
        r.custom = True
        self.server.store.resources[r.qualified] = r
        crd["status"] = {"acceptedNames": names, "storedVersions": [storage["name"]],
                         "conditions": [{"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                                         "lastTransitionTime": now()},
                                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                                         "lastTransitionTime": now()}]}

    def commit(self, res, ns, name, new, manager, operation, sub=None, dry=False):
        store = self.server.store
        key = (res.qualified, ns, name)
        old = store.objects[key]
        new["metadata"]["uid"] = old["metadata"]["uid"]
        new["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        new["metadata"]["name"], new["apiVersion"], new["kind"] = name, res.api_version, res.kind
        if res.namespaced:
            new["metadata"]["namespace"] = ns
        self.fold_string_data(res, new)
        if operation != "Apply":
            new["metadata"]["managedFields"] = copy.deepcopy(old["metadata"].get("managedFields", []))
        gen = old["metadata"].get("generation", 1)
        if sub != "status" and new.get("spec") != old.get("spec"):
            gen += 1
        new["metadata"]["generation"] = gen
        if sub == "status":  # the status subresource changes only status
            status = new.get("status")
            new = copy.deepcopy(old)
            new["status"] = status
        elif res.status:  # and the main resource never changes status
            new["status"] = old.get("status", new.get("status"))
            if "status" not in old: new.pop("status", None)
        comparable = lambda o: {k: v for k, v in o.items() if k != "metadata"} | {
            "metadata": {k: v for k, v in o["metadata"].items() if k not in ("resourceVersion", "managedFields")}}
        # An apply that only changes who owns what is a write; one that
        # changes nothing but its entry's time is not.
        owners = lambda o: [{k: v for k, v in m.items() if k != "time"} for m in o["metadata"].get("managedFields", [])]
        if comparable(new) == comparable(old) and (operation != "Apply" or owners(new) == owners(old)):
            return self.full(res, old)  # no-op update: no new resourceVersion, no event (as the real server)
        if operation != "Apply":
            fields.update_ownership(old, new, manager, sub, now(), res.status)
        if dry:
            return self.full(res, new)
        new["metadata"]["resourceVersion"] = store.next_rv()
        store.objects[key] = new
        store.emit(res, "MODIFIED", new)
        return self.full(res, new)

    def replace(self, res, ns, name, q, sub):
        store = self.server.store
        obj = self.body_json()
        with store.lock:
            cur = self.get(res, ns, name)
            want = obj.get("metadata", {}).get("resourceVersion")
            if want and want != cur["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has been '
                               "modified; please apply your changes to the latest version and try again"
                               % (res.qualified, name), {"name": name, "group": res.group, "kind": res.plural})
            out = self.commit(res, ns, name, obj, self.manager(q, self.default_manager()), "Update", sub,
                              dry=bool(q.get("dryRun")))
        self.send_json(200, out)

    def apply_patch(self, cur):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        patch = self.body_json()
        if ctype == "application/merge-patch+json":
            return merge_patch(cur, patch)
        if ctype == "application/strategic-merge-patch+json":
            return strategic_merge(cur, patch)
        if ctype == "application/json-patch+json":
            return json_patch(cur, patch)
        raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                       "media types include: application/json-patch+json, application/merge-patch+json, "
                       "application/strategic-merge-patch+json")

    def patch(self, res, ns, name, q, sub):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype == "application/apply-patch+yaml":
            return self.server_side_apply(res, ns, name, q, sub)
        store = self.server.store
        with store.lock:
            cur = self.get(res, ns, name)
            new = self.apply_patch(cur)
            want = new.get("metadata", {}).get("resourceVersion")
            if want and want != cur["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has been modified'
                               % (res.qualified, name))
            out = self.commit(res, ns, name, new, self.manager(q, self.default_manager()), "Update", sub,
                              dry=bool(q.get("dryRun")))
        self.send_json(200, out)

    def server_side_apply(self, res, ns, name, q, sub):
        """PATCH with application/apply-patch+yaml (kubectl apply
        --server-side): creates the object when missing, merges the applied
        configuration, owns its fields with operation Apply, and refuses
        (409) to change fields other managers own unless force=true."""
        manager = q.get("fieldManager")
        if not manager:
            raise ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                           "is required for apply patch")
        if sub:
            raise ApiError(405, "MethodNotAllowed", "apply to a subresource is not supported by the test server")
        patch = decode_json(self.raw_body or b"{}", "error decoding YAML")
        if not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "the body of an apply patch must be an object")
        if patch.get("kind") != res.kind or patch.get("apiVersion") != res.api_version:
            raise ApiError(400, "BadRequest", "the API version in the data (%s) does not match the expected API "
                           "version (%s)" % (patch.get("apiVersion"), res.api_version))
        md = patch.setdefault("metadata", {})
        if md.get("name", name) != name:
            raise ApiError(400, "BadRequest", "the name of the object (%s) does not match the name on the URL (%s)"
                           % (md.get("name"), name))
        self.fold_string_data(res, patch)
        store = self.server.store
        with store.lock:
            cur = store.objects.get((res.qualified, ns, name))
            new = fields.apply(copy.deepcopy(cur) if cur else None, patch, manager, q.get("force") == "true", now(),
                               res.status)
            if cur is None:
                new["apiVersion"], new["kind"] = res.api_version, res.kind
                out = self.insert(res, ns, name, new, q)
                code = 201
            else:
                out = self.commit(res, ns, name, new, manager, "Apply", dry=bool(q.get("dryRun")))
                code = 200
        self.send_json(code, out)

    def scale(self, method, res, ns, name, q):
        store = self.server.store
        with store.lock:
            cur = self.get(res, ns, name)
            def as_scale(o):
                labels = o.get("spec", {}).get("selector", {}).get("matchLabels", {})
                return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                        "metadata": {k: o["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                                   "creationTimestamp") if k in o["metadata"]},
                        "spec": {"replicas": o.get("spec", {}).get("replicas", 1)},
                        "status": {"replicas": o.get("status", {}).get("replicas", 0),
                                   "selector": ",".join("%s=%s" % kv for kv in sorted(labels.items()))}}
            if method == "GET":
                return self.send_json(200, as_scale(cur))
            if method == "PUT":
                scale = self.body_json()
            elif method == "PATCH":
                scale = self.apply_patch(as_scale(cur))
            else:
                raise ApiError(405, "MethodNotAllowed", "method not allowed")
            want = scale.get("metadata", {}).get("resourceVersion")
            if method == "PUT" and want and want != cur["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has been modified'
                               % (res.qualified, name))
            new = copy.deepcopy(cur)
            new.setdefault("spec", {})["replicas"] = scale.get("spec", {}).get("replicas", 0)
            out = self.commit(res, ns, name, new, self.manager(q, self.default_manager()), "Update", "scale",
                              dry=bool(q.get("dryRun")))
            # The real server writes no time on managedFields entries of the scale subresource (v1.24).
            for m in store.objects[(res.qualified, ns, name)]["metadata"]["managedFields"]:
                if m.get("subresource") == "scale": m.pop("time", None)
        self.send_json(200, as_scale(out))

    def delete(self, res, ns, name):
        store = self.server.store
        with store.lock:
            cur = self.get(res, ns, name)
            obj = store.objects.pop((res.qualified, ns, name))
            obj["metadata"]["resourceVersion"] = store.next_rv()
            store.emit(res, "DELETED", obj)
            if res.kind == "CustomResourceDefinition":
                plural, group = obj["spec"]["names"]["plural"], obj["spec"]["group"]
                store.resources.pop(plural + "." + group, None)
        self.send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                             "details": {"name": name, "group": res.group, "kind": res.plural,
                                         "uid": cur["metadata"]["uid"]}})
