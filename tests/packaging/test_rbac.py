#!/usr/bin/env python3
"""`kubetrail rbac` (issue 16, item 2): the RBAC it prints for a config,
applied with kubectl to the test API server, is enough and no more - proven
with `kubectl auth can-i --as` the service account (the test server
evaluates RBAC for SelfSubjectAccessReviews as kube-apiserver does): list
and watch of exactly the configured resources, in the configured
namespaces, the one Lease with leader election, and nothing else (no get,
no delete, no Secrets, no other resource or namespace). The kustomize
base's RBAC is what `kubetrail rbac` prints for the base's config.

usage: test_rbac.py KUBETRAIL_BINARY
"""
import os, subprocess, sys, tempfile, unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "apiserver"))
sys.path.insert(0, HERE)
from harness import ApiServer  # noqa: E402
from pyyaml import yaml  # noqa: E402

KUBETRAIL = None
SA = "system:serviceaccount:kubetrail:kubetrail"


class Rbac(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ApiServer()
        cls.kubeconfig = os.path.join(cls.server.dir, "kubeconfig-token")
        cls.env = dict(os.environ, KUBECONFIG=cls.kubeconfig)
        cls.tmp = tempfile.mkdtemp(prefix="kubetrail-rbac-")
        # kube-apiserver refuses objects in a namespace that does not exist
        # (NamespaceLifecycle), and so does the test server: create them.
        for ns in ("kubetrail", "ops", "shop", "web"):
            r = subprocess.run(["kubectl", "create", "namespace", ns], capture_output=True, text=True, env=cls.env,
                               timeout=60)
            assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def kubectl(self, *args):
        return subprocess.run(["kubectl", *args], capture_output=True, text=True, env=self.env, timeout=60)

    def rbac(self, toml, *extra):
        path = os.path.join(self.tmp, "c%d.toml" % abs(hash(toml)))
        with open(path, "w") as f:
            f.write(toml + '[[handlers]]\nname = "o"\nplugin = "log"\n[[routes]]\nchain = ["o"]\n')
        return subprocess.run([KUBETRAIL, "rbac", "--config", path, "--kubeconfig", self.kubeconfig, *extra],
                              capture_output=True, text=True, timeout=60)

    def apply(self, manifests):
        path = os.path.join(self.tmp, "rbac.yaml")
        with open(path, "w") as f:
            f.write(manifests)
        r = self.kubectl("apply", "-f", path)
        self.assertEqual(r.returncode, 0, r.stderr)

    def can(self, what, user=SA):
        r = self.kubectl("auth", "can-i", *what.split(), "--as", user)
        self.assertIn(r.stdout.strip(), ("yes", "no"), r.stderr)
        return r.stdout.strip() == "yes"

    def test_cluster_wide_with_leader_election(self):
        r = self.rbac('[cluster]\nname = "t"\n[watch]\nresources = ["deployments", "ConfigMap", "*.coordination.k8s.io"]\n'
                      '[leader_election]\nenabled = true\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.apply(r.stdout)
        for yes in ("list deployments.apps", "watch deployments.apps -n shop", "list configmaps -n any",
                    "watch configmaps", "list leases.coordination.k8s.io",
                    "create leases.coordination.k8s.io -n kubetrail",
                    "get leases.coordination.k8s.io/kubetrail -n kubetrail",
                    "update leases.coordination.k8s.io/kubetrail -n kubetrail"):
            self.assertTrue(self.can(yes), yes)
        for no in ("get deployments.apps", "delete deployments.apps", "patch configmaps", "list secrets",
                   "get secrets", "list pods", "list statefulsets.apps",
                   "update leases.coordination.k8s.io/other -n kubetrail",
                   "create leases.coordination.k8s.io -n default", "delete leases.coordination.k8s.io/kubetrail -n kubetrail"):
            self.assertFalse(self.can(no), no)
        # Another user gets nothing from it.
        self.assertFalse(self.can("list deployments.apps", user="system:serviceaccount:other:kubetrail"))

    def test_namespaced(self):
        r = self.rbac('[cluster]\nname = "t"\n[watch]\nresources = ["statefulsets", "namespaces"]\n'
                      'namespaces = ["shop", "web"]\n', "--namespace", "ops", "--service-account", "watcher")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.apply(r.stdout)
        user = "system:serviceaccount:ops:watcher"
        for yes in ("list statefulsets.apps -n shop", "watch statefulsets.apps -n web", "list namespaces"):
            self.assertTrue(self.can(yes, user), yes)
        for no in ("list statefulsets.apps -n other", "list statefulsets.apps --all-namespaces",
                   "get statefulsets.apps -n shop", "list deployments.apps -n shop"):
            self.assertFalse(self.can(no, user), no)
        self.assertNotIn("leases", r.stdout)  # no leader election: no Lease

    def test_unknown_resource_is_an_error_naming_close_matches(self):
        r = self.rbac('[cluster]\nname = "t"\n[watch]\nresources = ["deploymnts"]\n')
        self.assertEqual(r.returncode, 2)
        self.assertIn("deploymnts", r.stderr)
        self.assertIn("deployments", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_kustomize_base_is_what_kubetrail_rbac_prints(self):
        def rules(docs):
            role = next(d for d in docs if d and d["kind"] == "ClusterRole")
            return {(g, res, tuple(sorted(rule["verbs"]))) for rule in role["rules"]
                    for g in rule["apiGroups"] for res in rule["resources"]}
        base = os.path.join(ROOT, "packaging", "kustomize", "base")
        r = subprocess.run([KUBETRAIL, "rbac", "--config", os.path.join(base, "kubetrail.toml"), "--kubeconfig",
                            self.kubeconfig], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(base, "rbac.yaml")) as f:
            shipped = list(yaml.safe_load_all(f))
        self.assertEqual(rules(shipped), rules(yaml.safe_load_all(r.stdout)))


if __name__ == "__main__":
    KUBETRAIL = sys.argv.pop(1)
    unittest.main(verbosity=2)
