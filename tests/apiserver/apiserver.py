#!/usr/bin/env python3
"""A small Kubernetes API server for kubetrail's tests (Python 3 standard
library only).

It speaks enough of the real kube-apiserver's HTTP API for kubectl v1.32 and
for kubetrail's client: HTTPS with a CA and certificates generated at start
(openssl), bearer-token and client-certificate authentication, discovery
(aggregated apidiscovery.k8s.io/v2 for /api and /apis when the Accept header
asks for it, legacy otherwise or with --no-aggregated-discovery; group
versions, /version), create / get / list (limit
+ continue, label and field selectors) / replace (resourceVersion conflicts)
/ merge, strategic-merge and JSON patches / delete, the scale subresource,
watches (chunked, from a resourceVersion, bookmarks, timeoutSeconds) with a
bounded event history (an old resourceVersion gets 410 Gone), CRDs
registered at run time, Leases, Table output for kubectl's default printer,
and real Status objects for errors.

Test-only control endpoints (authenticated like the rest):
  POST /testing/cut-watches      close every open watch connection
  POST /testing/expire-history   forget the event history (a compaction at
                                 the current revision): the next watch gets
                                 410, a fresh list's resourceVersion does not
  POST /testing/delay?ms=N       delay every response by N ms (0: off)
  POST /testing/delay-watches?ms=N   delay only the start of watches (a gap
                                 in which changes happen unseen)
  POST /testing/delay-lists?ms=N delay only lists (a slow initial sync)
  GET  /testing/requests         the requests seen so far, as JSON lines

Usage: apiserver.py --dir DIR [--port 0] [--token T]... [--history N] [--no-aggregated-discovery]
Writes DIR/ca.crt, server and client certificates, DIR/kubeconfig-token,
DIR/kubeconfig-cert and DIR/port, then prints "READY <port>" and serves until
killed (or --lifetime seconds pass: tests must stop by themselves).
"""
import argparse, base64, collections, copy, datetime, http.server, json, os, re, socket, ssl
import subprocess, sys, threading, time, urllib.parse, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import k8sproto  # noqa: E402

# ---------------------------------------------------------------------------
# Resource catalogue
# ---------------------------------------------------------------------------
AGGREGATED_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

class Resource:
    def __init__(self, group, version, plural, kind, namespaced, short=(), singular=None, scale=False, status=True):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced, self.short, self.singular = namespaced, list(short), singular or kind.lower()
        self.scale, self.status = scale, status
        self.custom = False  # served for a CRD: unstructured, as kube-apiserver's apiextensions handler writes it

    @property
    def api_version(self):
        return self.group + "/" + self.version if self.group else self.version

    @property
    def qualified(self):
        return self.plural + "." + self.group if self.group else self.plural

BUILTIN = [
    Resource("", "v1", "namespaces", "Namespace", False, ["ns"]),
    Resource("", "v1", "configmaps", "ConfigMap", True, ["cm"], status=False),
    Resource("", "v1", "secrets", "Secret", True, status=False),
    Resource("", "v1", "services", "Service", True, ["svc"]),
    Resource("", "v1", "pods", "Pod", True, ["po"]),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, ["sa"], status=False),
    Resource("apps", "v1", "deployments", "Deployment", True, ["deploy"], scale=True),
    Resource("apps", "v1", "replicasets", "ReplicaSet", True, ["rs"], scale=True),
    Resource("apps", "v1", "statefulsets", "StatefulSet", True, ["sts"], scale=True),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, ["ds"]),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True, status=False),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False, ["crd", "crds"]),
]

def _ref(name):
    return {"allOf": [{"$ref": "#/components/schemas/" + name}], "default": {}}

# A faithful subset of kube-apiserver's /openapi/v3/apis/apps/v1 (v1.32):
# Deployment down to its containers, env and ports.
BUILTIN_SCHEMAS = {("apps", "Deployment"): {
    "io.k8s.api.apps.v1.Deployment": {
        "type": "object", "x-kubernetes-group-version-kind": [{"group": "apps", "version": "v1", "kind": "Deployment"}],
        "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                       "metadata": _ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
                       "spec": _ref("io.k8s.api.apps.v1.DeploymentSpec")}},
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"type": "object", "properties": {
        "name": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
    "io.k8s.api.apps.v1.DeploymentSpec": {"type": "object", "properties": {
        "replicas": {"type": "integer"}, "template": _ref("io.k8s.api.core.v1.PodTemplateSpec")}},
    "io.k8s.api.core.v1.PodTemplateSpec": {"type": "object", "properties": {
        "metadata": _ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
        "spec": _ref("io.k8s.api.core.v1.PodSpec")}},
    "io.k8s.api.core.v1.PodSpec": {"type": "object", "properties": {
        "containers": {"type": "array", "items": _ref("io.k8s.api.core.v1.Container"),
                       "x-kubernetes-list-map-keys": ["name"], "x-kubernetes-list-type": "map",
                       "x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge"},
        "tolerations": {"type": "array", "items": _ref("io.k8s.api.core.v1.Toleration"),
                        "x-kubernetes-list-type": "atomic"}}},
    "io.k8s.api.core.v1.Toleration": {"type": "object", "properties": {"key": {"type": "string"}}},
    "io.k8s.api.core.v1.Container": {"type": "object", "properties": {
        "name": {"type": "string"}, "image": {"type": "string"},
        "env": {"type": "array", "items": _ref("io.k8s.api.core.v1.EnvVar"),
                "x-kubernetes-list-map-keys": ["name"], "x-kubernetes-list-type": "map",
                "x-kubernetes-patch-merge-key": "name", "x-kubernetes-patch-strategy": "merge"},
        "ports": {"type": "array", "items": _ref("io.k8s.api.core.v1.ContainerPort"),
                  "x-kubernetes-list-map-keys": ["containerPort", "protocol"], "x-kubernetes-list-type": "map",
                  "x-kubernetes-patch-merge-key": "containerPort", "x-kubernetes-patch-strategy": "merge"}}},
    "io.k8s.api.core.v1.EnvVar": {"type": "object", "properties": {"name": {"type": "string"},
                                                                  "value": {"type": "string"}}},
    "io.k8s.api.core.v1.ContainerPort": {"type": "object", "properties": {"containerPort": {"type": "integer"}}},
}}

# Strategic merge patch keys of the built-in types (k8s.io/api patchMergeKey).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
              "volumes": "name", "volumeMounts": "mountPath", "imagePullSecrets": "name", "conditions": "type",
              "ownerReferences": "uid", "hostAliases": "ip", "volumeDevices": "devicePath"}
PORT_KEYS = ("containerPort", "port")

def sort_keys_deep(v):
    if isinstance(v, dict):
        return {k: sort_keys_deep(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [sort_keys_deep(x) for x in v]
    return v


def shaped(res, obj, in_list=False):
    """An object as kube-apiserver writes it. A built-in type is a Go struct:
    kind, then apiVersion, first; in the items of a list neither (the List
    carries them - client-go's informers and kubetrail must cope). A custom
    resource is unstructured JSON: every map's keys sorted, kind and
    apiVersion in list items too. test_kubectl_fidelity.py holds these rules."""
    rest = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
    if res.custom:
        return sort_keys_deep(dict(rest, apiVersion=res.api_version, kind=res.kind))
    if in_list:
        return rest
    out = {"kind": res.kind, "apiVersion": res.api_version}
    out.update(rest)
    return out


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self):
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
                "reason": self.reason, "details": self.details, "code": self.code}

# ---------------------------------------------------------------------------
# Store: objects, one resourceVersion counter, bounded event history
# ---------------------------------------------------------------------------
class Store:
    def __init__(self, history):
        self.lock = threading.Condition()
        self.rv = 100
        self.objects = {}  # (qualified, ns, name) -> obj
        self.history = collections.deque(maxlen=history)  # (rv, qualified, type, obj)
        self.oldest = self.rv  # watches from below this get 410
        self.resources = {r.qualified: r for r in BUILTIN}
        self.watch_epoch = 0  # bumped to cut watches

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

# ---------------------------------------------------------------------------
# Selectors
# ---------------------------------------------------------------------------
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

# ---------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------
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

# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------
class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubetrail-test-apiserver"

    def log_message(self, fmt, *args):  # quiet: tests read /testing/requests instead
        pass

    # -- plumbing --------------------------------------------------------
    def send_json(self, code, obj, content_type="application/json"):
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(body)

    def fail(self, err):
        self.send_json(err.code, err.status())

    def body_json(self):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf":
            # kubectl's typed clients (kubectl create deployment, ...) send
            # protobuf, as the real server accepts for built-in types.
            try:
                return k8sproto.decode(self.raw_body)
            except (k8sproto.ProtoError, KeyError, UnicodeDecodeError) as e:
                raise ApiError(415, "UnsupportedMediaType", "cannot decode protobuf body: %s" % e)
        raw = self.raw_body
        if not raw:
            raise ApiError(400, "BadRequest", "request body required")
        try:
            return json.loads(raw)
        except ValueError as e:
            raise ApiError(400, "BadRequest", "invalid JSON in request body: %s" % e)

    def authenticate(self):
        cfg = self.server.cfg
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            if auth[7:] in cfg.tokens:
                return "token"
            raise ApiError(401, "Unauthorized", "Unauthorized")
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        if cert:
            return "cert"
        raise ApiError(401, "Unauthorized", "Unauthorized")

    def dispatch(self, method):
        n = int(self.headers.get("Content-Length") or 0)
        self.raw_body = self.rfile.read(n) if n else b""  # always consumed: keep-alive stays in sync
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        store = self.server.store
        with store.lock:
            store_requests = self.server.requests
            store_requests.append({"method": method, "path": url.path, "query": q,
                                   "userAgent": self.headers.get("User-Agent", ""),
                                   "accept": self.headers.get("Accept", ""),
                                   "contentType": self.headers.get("Content-Type", "")})
        try:
            self.authenticate()
            if self.server.delay_ms:
                time.sleep(self.server.delay_ms / 1000.0)
            self.route(method, url.path, q)
        except ApiError as e:
            self.fail(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        except Exception as e:  # a bug here must be visible, as a real 500
            self.fail(ApiError(500, "InternalError", "test apiserver: %r" % e))

    def do_GET(self): self.dispatch("GET")
    def do_POST(self): self.dispatch("POST")
    def do_PUT(self): self.dispatch("PUT")
    def do_PATCH(self): self.dispatch("PATCH")
    def do_DELETE(self): self.dispatch("DELETE")

    # -- routing ---------------------------------------------------------
    def route(self, method, path, q):
        store = self.server.store
        parts = [p for p in path.split("/") if p]
        if path.startswith("/testing/"):
            return self.testing(method, parts[1], q)
        if path == "/version":
            return self.send_json(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-kubetrail-test",
                                        "platform": "linux/amd64"})
        if path in ("/healthz", "/readyz", "/livez"):
            self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
            return self.wfile.write(b"ok")
        if path == "/openapi/v3":
            return self.send_json(200, {"paths": {
                gv_path: {"serverRelativeURL": "/openapi/v3/%s?hash=%s" % (gv_path, self.server.store.rv)}
                for gv_path in self.group_version_paths()}})
        if path.startswith("/openapi/v3/"):
            return self.send_json(200, self.openapi_v3(path[len("/openapi/v3/"):]))
        if path in ("/api", "/apis") and self.wants_aggregated():
            return self.send_json(200, self.aggregated(core=path == "/api"), content_type=AGGREGATED_TYPE)
        if path == "/api":
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:%d" % self.server.server_address[1]}]})
        if path == "/apis":
            return self.send_json(200, self.group_list())
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts and parts[0] == "apis" and len(parts) >= 2:
            if len(parts) == 2:
                g = next((x for x in self.group_list()["groups"] if x["name"] == parts[1]), None)
                if not g: raise ApiError(404, "NotFound", "the server could not find the requested resource")
                return self.send_json(200, dict(g, kind="APIGroup", apiVersion="v1"))
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return self.send_json(200, self.resource_list(group, version))
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        res = resource_for(store, group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if res.namespaced is False:
            ns = None
        if method == "GET" and name is None:
            return self.watch(res, ns, q) if q.get("watch") in ("1", "true") else self.list(res, ns, q)
        if method == "POST" and name is None:
            return self.create(res, ns, q)
        if name is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if sub == "scale" and res.scale:
            return self.scale(method, res, ns, name, q)
        if sub not in (None, "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET": return self.send_json(200, self.get(res, ns, name))
        if method == "PUT": return self.replace(res, ns, name, q, sub)
        if method == "PATCH": return self.patch(res, ns, name, q, sub)
        if method == "DELETE": return self.delete(res, ns, name)
        raise ApiError(405, "MethodNotAllowed", "method not allowed")

    # -- discovery -------------------------------------------------------
    def wants_aggregated(self):
        """Content negotiation as kube-apiserver does it for /api and /apis:
        the first acceptable media range wins; the aggregated form is JSON
        with g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList (this server
        speaks neither v2beta1 nor protobuf, so those ranges are skipped)."""
        if not self.server.cfg.aggregated_discovery:
            return False
        for media in (self.headers.get("Accept") or "").split(","):
            params = [p.strip() for p in media.split(";")]
            kv = dict(p.split("=", 1) for p in params[1:] if "=" in p)
            if params[0] in ("application/json", "*/*") and kv.get("g") == "apidiscovery.k8s.io":
                if kv.get("v") == "v2" and kv.get("as") == "APIGroupDiscoveryList":
                    return True
                continue
            if params[0] in ("application/json", "*/*"):
                return False
        return False

    def aggregated(self, core):
        groups = collections.OrderedDict()
        for r in self.server.store.resources.values():
            if (r.group == "") == core:
                groups.setdefault(r.group, []).append(r)
        items = []
        for group, rs in groups.items():
            resources = []
            for r in rs:
                d = {"resource": r.plural, "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                     "scope": "Namespaced" if r.namespaced else "Cluster", "singularResource": r.singular,
                     "verbs": VERBS}
                if r.short:
                    d["shortNames"] = r.short
                subs = []
                if r.scale:
                    subs.append({"subresource": "scale",
                                 "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                                 "verbs": ["get", "patch", "update"]})
                if r.status:
                    subs.append({"subresource": "status",
                                 "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                                 "verbs": ["get", "patch", "update"]})
                if subs:
                    d["subresources"] = subs
                resources.append(d)
            meta = {"creationTimestamp": None}
            if group:
                meta["name"] = group
            items.append({"metadata": meta, "versions": [
                {"version": rs[0].version, "resources": resources, "freshness": "Current"}]})
        return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
                "items": items}

    def group_list(self):
        groups = collections.OrderedDict()
        for r in self.server.store.resources.values():
            if r.group:
                groups.setdefault(r.group, r.version)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": g + "/" + v, "version": v}],
             "preferredVersion": {"groupVersion": g + "/" + v, "version": v}} for g, v in groups.items()]}

    def group_version_paths(self):
        out = set()
        for r in self.server.store.resources.values():
            out.add("apis/%s/%s" % (r.group, r.version) if r.group else "api/" + r.version)
        return sorted(out)

    def openapi_v3(self, gv_path):
        """Just enough OpenAPI v3 for kubectl: every write operation declares
        the fieldValidation query parameter, so kubectl leaves validation to
        the server (which, here, accepts any fields)."""
        paths = {}
        param = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}}]
        for r in self.server.store.resources.values():
            prefix = "apis/%s/%s" % (r.group, r.version) if r.group else "api/" + r.version
            if prefix != gv_path:
                continue
            gvk = {"group": r.group, "version": r.version, "kind": r.kind}
            op = lambda verb: {"x-kubernetes-action": verb, "x-kubernetes-group-version-kind": gvk,
                               "parameters": param, "responses": {"200": {"description": "OK"}}}
            base = "/" + prefix + ("/namespaces/{namespace}/" if r.namespaced else "/") + r.plural
            paths[base] = {"post": op("post")}
            paths[base + "/{name}"] = {"put": op("put"), "patch": op("patch")}
        if not paths:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        # Schemas, shaped like kube-apiserver's: the kind's schema carries
        # x-kubernetes-group-version-kind, nested types are $refs wrapped in
        # allOf, keyed lists carry list-map keys and patch merge keys. A CRD's
        # schema is its openAPIV3Schema, as the real server publishes it.
        schemas = {}
        for r in self.server.store.resources.values():
            prefix = "apis/%s/%s" % (r.group, r.version) if r.group else "api/" + r.version
            if prefix != gv_path:
                continue
            gvk = [{"group": r.group, "version": r.version, "kind": r.kind}]
            if getattr(r, "schema", None):
                name = ".".join(reversed(r.group.split("."))) + "." + r.version + "." + r.kind
                schemas[name] = dict(r.schema, **{"x-kubernetes-group-version-kind": gvk})
            elif (r.group, r.kind) in BUILTIN_SCHEMAS:
                schemas.update(BUILTIN_SCHEMAS[(r.group, r.kind)])
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "paths": paths,
                "components": {"schemas": schemas}}

    def resource_list(self, group, version):
        items = []
        for r in self.server.store.resources.values():
            if r.group != group or r.version != version:
                continue
            items.append({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                          "verbs": VERBS, "shortNames": r.short} if r.short else
                         {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                          "verbs": VERBS})
            if r.status:
                items.append({"name": r.plural + "/status", "singularName": "", "namespaced": r.namespaced,
                              "kind": r.kind, "verbs": ["get", "patch", "update"]})
            if r.scale:
                items.append({"name": r.plural + "/scale", "singularName": "", "namespaced": r.namespaced,
                              "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
        if not items:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        gv = group + "/" + version if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": items}

    # -- reads -----------------------------------------------------------
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

    def stamp(self, obj, manager, operation, subresource=None):
        entry = {"apiVersion": obj.get("apiVersion", ""), "fieldsType": "FieldsV1", "fieldsV1": {},
                 "manager": manager, "operation": operation, "time": now()}
        if subresource:
            entry["subresource"] = subresource
        mfs = [m for m in obj["metadata"].get("managedFields", [])
               if not (m["manager"] == manager and m["operation"] == operation and m.get("subresource") == subresource)]
        mfs.append(entry)
        obj["metadata"]["managedFields"] = mfs

    def create(self, res, ns, q):
        store = self.server.store
        obj = self.body_json()
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
            if q.get("dryRun"):
                return self.send_json(201, self.full(res, obj))
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now()
            md["generation"] = 1
            md["resourceVersion"] = store.next_rv()
            obj["apiVersion"], obj["kind"] = res.api_version, res.kind
            self.stamp(obj, self.manager(q, self.default_manager()), "Update")
            if res.kind == "CustomResourceDefinition":
                self.register_crd(obj)
            store.objects[key] = obj
            store.emit(res, "ADDED", obj)
            out = self.full(res, obj)
        self.send_json(201, out)

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

    def commit(self, res, ns, name, new, manager, operation, sub=None):
        store = self.server.store
        key = (res.qualified, ns, name)
        old = store.objects[key]
        new["metadata"]["uid"] = old["metadata"]["uid"]
        new["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        new["metadata"]["name"], new["apiVersion"], new["kind"] = name, res.api_version, res.kind
        if res.namespaced:
            new["metadata"]["namespace"] = ns
        new["metadata"].setdefault("managedFields", old["metadata"].get("managedFields", []))
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
        if comparable(new) == comparable(old):
            return self.full(res, old)  # no-op update: no new resourceVersion, no event (as the real server)
        self.stamp(new, manager, operation, sub)
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
            out = self.commit(res, ns, name, obj, self.manager(q, self.default_manager()), "Update", sub)
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
        store = self.server.store
        with store.lock:
            cur = self.get(res, ns, name)
            new = self.apply_patch(cur)
            want = new.get("metadata", {}).get("resourceVersion")
            if want and want != cur["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has been modified'
                               % (res.qualified, name))
            out = self.commit(res, ns, name, new, self.manager(q, self.default_manager()), "Update", sub)
        self.send_json(200, out)

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
            out = self.commit(res, ns, name, new, self.manager(q, self.default_manager()), "Update", "scale")
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

    # -- watch -----------------------------------------------------------
    def watch(self, res, ns, q):
        store = self.server.store
        if self.server.watch_delay_ms:
            time.sleep(self.server.watch_delay_ms / 1000.0)
        reqs = parse_label_selector(q.get("labelSelector"))
        timeout = float(q.get("timeoutSeconds") or 1800)
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        deadline = time.time() + timeout
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(event):
            data = (json.dumps(event, separators=(",", ":")) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def visible(qual, obj):
            return (qual == res.qualified and (ns is None or obj["metadata"].get("namespace") == ns)
                    and labels_match(reqs, obj["metadata"].get("labels", {})) and field_match(q.get("fieldSelector"), obj))

        with store.lock:
            epoch = store.watch_epoch
            rv = q.get("resourceVersion")
            pending = []
            if not rv or rv == "0":
                # "Get state and start at most recent": ADDED for what exists.
                for (qual, _, _), obj in sorted(store.objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])):
                    if visible(qual, obj):
                        pending.append({"type": "ADDED", "object": self.full(res, obj)})
                since = store.rv
            else:
                since = int(rv)
                if since < store.oldest or self.server.force_gone:
                    self.server.force_gone = False
                    pending.append({"type": "ERROR", "object": ApiError(
                        410, "Expired", "too old resource version: %d (%d)" % (since, store.oldest)).status()})
                    since = None
        cut = False
        try:
            for e in pending:
                send(e)
            last_bookmark = time.time()
            while since is not None:
                with store.lock:
                    # scanned_rv: everything up to it has been looked at, so a
                    # bookmark may name it; not store.rv after the wait, which
                    # may cover events not yet sent.
                    scanned_rv = store.rv
                    events = [(erv, t, o) for erv, qual, t, o in store.history if erv > since and visible(qual, o)]
                    if not events:
                        store.lock.wait(timeout=0.2)
                    cut = store.watch_epoch != epoch
                for erv, t, o in events:
                    send({"type": t, "object": self.full(res, o)})
                    since = erv
                if cut or time.time() >= deadline:
                    break
                if bookmarks and time.time() - last_bookmark >= self.server.cfg.bookmark_seconds:
                    since = max(since, scanned_rv)
                    send({"type": "BOOKMARK", "object": {"kind": res.kind, "apiVersion": res.api_version,
                                                         "metadata": {"resourceVersion": str(since)}}})
                    last_bookmark = time.time()
            if not cut:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass
        self.close_connection = True
        if cut:  # an abrupt cut, as a dropped connection: no final chunk
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- test controls ---------------------------------------------------
    def testing(self, method, what, q):
        store = self.server.store
        if what == "requests" and method == "GET":
            with store.lock:
                lines = "".join(json.dumps(r) + "\n" for r in self.server.requests).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(lines))); self.end_headers()
            return self.wfile.write(lines)
        if method != "POST":
            raise ApiError(405, "MethodNotAllowed", "POST only")
        with store.lock:
            if what == "cut-watches":
                store.watch_epoch += 1
                store.lock.notify_all()
            elif what == "expire-history":
                # As an etcd compaction at the current revision: a watch from
                # any older resourceVersion gets 410, but a list made now
                # returns a resourceVersion that can be watched (a real
                # server never marks its own fresh list as too old).
                store.history.clear()
                store.oldest = store.rv
                self.server.force_gone = True
            elif what == "delay":
                self.server.delay_ms = int(q.get("ms", "0"))
            elif what == "delay-watches":
                self.server.watch_delay_ms = int(q.get("ms", "0"))
            elif what == "delay-lists":
                self.server.list_delay_ms = int(q.get("ms", "0"))
            else:
                raise ApiError(404, "NotFound", "no such test control")
        self.send_json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})

# ---------------------------------------------------------------------------
# Certificates and kubeconfigs
# ---------------------------------------------------------------------------
def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def make_pki(d):
    ca, key = os.path.join(d, "ca.crt"), os.path.join(d, "ca.key")
    if not os.path.exists(ca):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kubetrail-test-ca",
                "-keyout", key, "-out", ca)
    for name, subj, ext in (("server", "/CN=kube-apiserver", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                            ("client", "/O=system:masters/CN=kubetrail-test", "extendedKeyUsage=clientAuth")):
        crt = os.path.join(d, name + ".crt")
        if os.path.exists(crt):
            continue
        k, csr, extf = os.path.join(d, name + ".key"), os.path.join(d, name + ".csr"), os.path.join(d, name + ".ext")
        with open(extf, "w") as f:
            f.write(ext + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout", k, "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", key, "-CAcreateserial", "-days", "2",
                "-extfile", extf, "-out", crt)

def write_kubeconfigs(d, port, token):
    server = "https://127.0.0.1:%d" % port
    def kc(user):
        return ("apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: %s\n"
                "    certificate-authority: %s\nusers:\n- name: u\n  user:\n%s"
                "contexts:\n- name: test\n  context:\n    cluster: test\n    user: u\n    namespace: default\n"
                "current-context: test\n") % (server, os.path.join(d, "ca.crt"), user)
    with open(os.path.join(d, "kubeconfig-token"), "w") as f:
        f.write(kc("    token: %s\n" % token))
    with open(os.path.join(d, "kubeconfig-cert"), "w") as f:
        f.write(kc("    client-certificate: %s\n    client-key: %s\n" % (
            os.path.join(d, "client.crt"), os.path.join(d, "client.key"))))
    with open(os.path.join(d, "port"), "w") as f:
        f.write(str(port))

class Config:
    pass

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", action="append", default=[])
    ap.add_argument("--history", type=int, default=1000)
    ap.add_argument("--bookmark-seconds", type=float, default=1.0)
    ap.add_argument("--no-aggregated-discovery", action="store_true",
                    help="answer /api and /apis with the legacy documents only, as servers before 1.26 do")
    ap.add_argument("--lifetime", type=float, default=600, help="exit after this many seconds")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    make_pki(a.dir)
    cfg = Config()
    cfg.tokens = set(a.token or ["test-token"])
    cfg.bookmark_seconds = a.bookmark_seconds
    cfg.aggregated_discovery = not a.no_aggregated_discovery
    srv = Server(("127.0.0.1", a.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(a.dir, "server.crt"), os.path.join(a.dir, "server.key"))
    ctx.load_verify_locations(os.path.join(a.dir, "ca.crt"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.cfg, srv.store, srv.requests = cfg, Store(a.history), []
    srv.delay_ms, srv.watch_delay_ms, srv.list_delay_ms, srv.force_gone = 0, 0, 0, False
    port = srv.server_address[1]
    write_kubeconfigs(a.dir, port, sorted(cfg.tokens)[0])
    threading.Timer(a.lifetime, lambda: os._exit(0)).start()
    print("READY %d" % port, flush=True)
    srv.serve_forever()

if __name__ == "__main__":
    main()
