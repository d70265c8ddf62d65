"""SelfSubjectAccessReview, as `kubectl auth can-i` asks it: RBAC evaluated
over the stored ClusterRoles, ClusterRoleBindings, Roles and RoleBindings,
for the user kubectl impersonates (--as, the Impersonate-User and
Impersonate-Group headers). Without impersonation the caller is the test's
admin and is allowed everything, as a cluster-admin is.

Like kube-apiserver's RBAC authorizer: a service account user
system:serviceaccount:NS:NAME matches ServiceAccount subjects NS/NAME and
the groups system:serviceaccounts, system:serviceaccounts:NS and
system:authenticated; a rule matches when its verbs, apiGroups and
resources hold the request's (or "*"), a subresource as RESOURCE/SUB, and
its resourceNames (when any) hold the request's name; a RoleBinding grants
only in its own namespace; non-resource URLs are allowed as
system:discovery allows them to every authenticated user."""

DISCOVERY_PATHS = ("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
                   "/readyz", "/version", "/version/")


def _matches(values, want):
    return "*" in values or want in values


def _rule_allows(rule, attrs):
    if not _matches(rule.get("verbs", []), attrs.get("verb", "")):
        return False
    if not _matches(rule.get("apiGroups", []), attrs.get("group", "")):
        return False
    resource = attrs.get("resource", "")
    if attrs.get("subresource"):
        resource += "/" + attrs["subresource"]
    resources = rule.get("resources", [])
    if not ("*" in resources or resource in resources or
            (attrs.get("subresource") and attrs.get("resource", "") + "/*" in resources)):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.get("name", "") in names


class AuthorizationMixin:
    def subject_access_review(self):
        review = self.body_json()  # kubectl sends it as protobuf
        spec = review.get("spec", {})
        user = self.headers.get("Impersonate-User")
        groups = set(self.headers.get_all("Impersonate-Group") or [])
        if user is None:
            allowed, reason = True, "the test's admin"
        elif "nonResourceAttributes" in spec:
            a = spec["nonResourceAttributes"]
            path = a.get("path", "")
            allowed = a.get("verb") == "get" and any(
                path == p or (p.endswith("*") and path.startswith(p[:-1])) for p in DISCOVERY_PATHS)
            reason = "system:discovery" if allowed else ""
        else:
            allowed, reason = self.rbac_allows(user, groups, spec.get("resourceAttributes", {}))
        out = {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
               "metadata": {"creationTimestamp": None}, "spec": spec, "status": {"allowed": allowed}}
        if reason:
            out["status"]["reason"] = reason
        self.send_json(201, out)

    def rbac_allows(self, user, groups, attrs):
        groups = set(groups) | {"system:authenticated"}
        sa = None
        if user.startswith("system:serviceaccount:"):
            ns, _, name = user[len("system:serviceaccount:"):].partition(":")
            sa = (ns, name)
            groups |= {"system:serviceaccounts", "system:serviceaccounts:" + ns}

        def bound(binding):
            for s in binding.get("subjects", []):
                kind = s.get("kind")
                if kind == "User" and s.get("name") == user:
                    return True
                if kind == "Group" and s.get("name") in groups:
                    return True
                if kind == "ServiceAccount" and sa and (s.get("namespace"), s.get("name")) == sa:
                    return True
            return False

        objects = self.server.store.objects
        def role(kind_plural, ns, name):
            return objects.get(("%s.rbac.authorization.k8s.io" % kind_plural, ns, name))

        candidates = []
        for (qualified, ns, name), b in list(objects.items()):
            if qualified == "clusterrolebindings.rbac.authorization.k8s.io" and bound(b):
                candidates.append(("ClusterRoleBinding " + name, role("clusterroles", None, b["roleRef"]["name"])))
            elif (qualified == "rolebindings.rbac.authorization.k8s.io" and ns == attrs.get("namespace")
                  and attrs.get("namespace") and bound(b)):
                ref = b["roleRef"]
                r = role("clusterroles", None, ref["name"]) if ref.get("kind") == "ClusterRole" else \
                    role("roles", ns, ref["name"])
                candidates.append(("RoleBinding %s/%s" % (ns, name), r))
        for why, r in candidates:
            if r and any(_rule_allows(rule, attrs) for rule in r.get("rules", [])):
                return True, "RBAC: allowed by " + why
        return False, ""
