"""Decoding of the Kubernetes protobuf encoding, for the few built-in types
that kubectl v1.32 sends as protobuf (its typed `kubectl create deployment |
namespace | configmap | secret | service | serviceaccount | role |
rolebinding | clusterrole | clusterrolebinding` and `kubectl auth can-i`
clients do; everything else it
sends as JSON). A small schema table (field numbers from k8s.io/api's
generated.proto files) drives a generic wire-format reader; unknown fields
are skipped, as protobuf readers do.

Envelope: the 4 bytes "k8s\\0", then runtime.Unknown{typeMeta=1{apiVersion=1,
kind=2}, raw=2, contentEncoding=3, contentType=4}; raw is the object.
"""
import base64

# message -> {field number: (json name, type)}; type is "string", "int",
# "bool", "bytes", "time", "map" (string->string), "map:<Msg>" (string->Msg),
# "mapbytes" (string->bytes), a message name, or "[]" + any of those.
SCHEMA = {
    "ObjectMeta": {1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"),
                   5: ("uid", "string"), 6: ("resourceVersion", "string"), 7: ("generation", "int"),
                   8: ("creationTimestamp", "time"), 11: ("labels", "map"), 12: ("annotations", "map"),
                   14: ("finalizers", "[]string")},
    "LabelSelector": {1: ("matchLabels", "map"), 2: ("matchExpressions", "[]LabelSelectorRequirement")},
    "LabelSelectorRequirement": {1: ("key", "string"), 2: ("operator", "string"), 3: ("values", "[]string")},
    "Deployment": {1: ("metadata", "ObjectMeta"), 2: ("spec", "DeploymentSpec"), 3: ("status", "DeploymentStatus")},
    "DeploymentSpec": {1: ("replicas", "int"), 2: ("selector", "LabelSelector"), 3: ("template", "PodTemplateSpec"),
                       4: ("strategy", "DeploymentStrategy"), 5: ("minReadySeconds", "int"),
                       6: ("revisionHistoryLimit", "int"), 7: ("paused", "bool"), 9: ("progressDeadlineSeconds", "int")},
    "DeploymentStrategy": {1: ("type", "string")},
    "DeploymentStatus": {1: ("observedGeneration", "int"), 2: ("replicas", "int")},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {2: ("containers", "[]Container"), 3: ("restartPolicy", "string"),
                4: ("terminationGracePeriodSeconds", "int"), 6: ("dnsPolicy", "string"),
                8: ("serviceAccountName", "string"), 19: ("schedulerName", "string"),
                20: ("initContainers", "[]Container")},
    "Container": {1: ("name", "string"), 2: ("image", "string"), 3: ("command", "[]string"), 4: ("args", "[]string"),
                  5: ("workingDir", "string"), 6: ("ports", "[]ContainerPort"), 7: ("env", "[]EnvVar"),
                  8: ("resources", "ResourceRequirements"), 13: ("terminationMessagePath", "string"),
                  14: ("imagePullPolicy", "string"), 20: ("terminationMessagePolicy", "string")},
    "ContainerPort": {1: ("name", "string"), 2: ("hostPort", "int"), 3: ("containerPort", "int"), 4: ("protocol", "string")},
    "EnvVar": {1: ("name", "string"), 2: ("value", "string")},
    "ResourceRequirements": {1: ("limits", "map:Quantity"), 2: ("requests", "map:Quantity")},
    "Quantity": {1: ("string", "string")},
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "[]string")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "map"), 3: ("binaryData", "mapbytes"),
                  4: ("immutable", "bool")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "mapbytes"), 3: ("type", "string"),
               4: ("stringData", "map"), 5: ("immutable", "bool")},
    "Service": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ServiceSpec")},
    "ServiceSpec": {1: ("ports", "[]ServicePort"), 2: ("selector", "map"), 3: ("clusterIP", "string"),
                    4: ("type", "string")},
    "ServicePort": {1: ("name", "string"), 2: ("protocol", "string"), 3: ("port", "int"),
                    4: ("targetPort", "IntOrString"), 5: ("nodePort", "int")},
    "IntOrString": {1: ("type", "int"), 2: ("intVal", "int"), 3: ("strVal", "string")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"), 2: ("secrets", "[]ObjectReference"),
                       3: ("imagePullSecrets", "[]LocalObjectReference"), 4: ("automountServiceAccountToken", "bool")},
    "ObjectReference": {1: ("kind", "string"), 2: ("namespace", "string"), 3: ("name", "string"), 4: ("uid", "string"),
                        5: ("apiVersion", "string"), 6: ("resourceVersion", "string"), 7: ("fieldPath", "string")},
    "LocalObjectReference": {1: ("name", "string")},
    # k8s.io/api/rbac/v1 (kubectl create role | rolebinding | clusterrole | clusterrolebinding)
    "Role": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[]PolicyRule")},
    "ClusterRole": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[]PolicyRule")},
    "PolicyRule": {1: ("verbs", "[]string"), 2: ("apiGroups", "[]string"), 3: ("resources", "[]string"),
                   4: ("resourceNames", "[]string"), 5: ("nonResourceURLs", "[]string")},
    "RoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[]Subject"), 3: ("roleRef", "RoleRef")},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[]Subject"), 3: ("roleRef", "RoleRef")},
    "Subject": {1: ("kind", "string"), 2: ("apiGroup", "string"), 3: ("name", "string"), 4: ("namespace", "string")},
    "RoleRef": {1: ("apiGroup", "string"), 2: ("kind", "string"), 3: ("name", "string")},
    # k8s.io/api/authorization/v1 (kubectl auth can-i)
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectAccessReviewSpec")},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes"),
                                    2: ("nonResourceAttributes", "NonResourceAttributes")},
    "ResourceAttributes": {1: ("namespace", "string"), 2: ("verb", "string"), 3: ("group", "string"),
                           4: ("version", "string"), 5: ("resource", "string"), 6: ("subresource", "string"),
                           7: ("name", "string")},
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
}
KINDS = {"Deployment", "Namespace", "ConfigMap", "Secret", "Service", "SelfSubjectAccessReview", "ServiceAccount",
         "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}


class ProtoError(ValueError):
    pass


def _varint(b, i):
    shift = value = 0
    while True:
        if i >= len(b):
            raise ProtoError("truncated varint")
        c = b[i]; i += 1
        value |= (c & 0x7F) << shift
        if not c & 0x80:
            return value, i
        shift += 7


def _fields(b):
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ProtoError("unsupported wire type %d" % wire)
        yield num, wire, v


def _signed(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def _value(kind, v):
    if kind == "string":
        return v.decode()
    if kind == "int":
        return _signed(v)
    if kind == "bool":
        return bool(v)
    if kind == "bytes":
        return base64.b64encode(v).decode()
    if kind == "time":
        seconds = dict((n, x) for n, _, x in _fields(v)).get(1, 0)
        if not seconds:
            return None
        import datetime
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return decode_message(kind, v)


# Fields whose zero value is meaningful (pointers in the Go types); other
# zero values are what gogo-protobuf writes for unset fields, and the JSON
# form leaves them out (omitempty).
KEEP_ZERO = {"replicas"}


def _drop_zero(obj):
    return {k: v for k, v in obj.items() if k in KEEP_ZERO or v not in ("", 0, False) or isinstance(v, dict)}


def decode_message(name, b):
    schema = SCHEMA[name]
    out = {}
    for num, _, v in _fields(b):
        if num not in schema:
            continue  # a field this table does not know: skipped, like any protobuf reader
        json_name, kind = schema[num]
        if kind.startswith("map"):
            entry = dict((n, x) for n, _, x in _fields(v))
            key = entry.get(1, b"").decode()
            raw = entry.get(2, b"")
            if kind == "map":
                val = raw.decode()
            elif kind == "mapbytes":
                val = base64.b64encode(raw).decode()
            else:
                val = decode_message(kind[4:], raw)
                if kind == "map:Quantity":
                    val = val.get("string", "0")
            out.setdefault(json_name, {})[key] = val
        elif kind.startswith("[]"):
            out.setdefault(json_name, []).append(_value(kind[2:], v))
        else:
            out[json_name] = _value(kind, v)
    if name == "IntOrString":
        return out.get("strVal", "") if out.get("type") == 1 else out.get("intVal", 0)
    return _drop_zero(out)


def decode(body):
    """The JSON form of a protobuf-encoded object; raises ProtoError."""
    if body[:4] != b"k8s\x00":
        raise ProtoError("missing the k8s protobuf magic number")
    unknown = dict((n, v) for n, _, v in _fields(body[4:]))
    type_meta = dict((n, v.decode()) for n, _, v in _fields(unknown.get(1, b"")))
    kind = type_meta.get(2, "")
    if kind not in KINDS:
        raise ProtoError("protobuf for kind %r is not supported by the test apiserver" % kind)
    obj = decode_message(kind, unknown.get(2, b""))
    obj["apiVersion"], obj["kind"] = type_meta.get(1, ""), kind
    return obj
