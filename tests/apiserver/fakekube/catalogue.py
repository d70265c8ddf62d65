"""The resources this server serves, and how kube-apiserver shapes their JSON."""

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
    Resource("", "v1", "events", "Event", True, ["ev"], status=False),  # core/v1, as kubectl get events reads them
    # What kubetrail's manifests create (packaging/kustomize): RBAC and PDBs.
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, status=False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False, status=False),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True, status=False),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, status=False),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"]),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False, ["crd", "crds"]),
]


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
