"""Discovery (aggregated v2 and legacy) and OpenAPI v3, as kube-apiserver serves them."""
import collections

from .catalogue import VERBS
from .errors import ApiError

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


class Discovery:
    """Mixed into the HTTP handler: /api, /apis, /apis/GROUP/VERSION and /openapi/v3."""

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
