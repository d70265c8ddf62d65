#!/usr/bin/env python3
"""packaging/kustomize keeps the daemon's promises (issue 16, item 3):
rendered by kubectl's own kustomize, each overlay runs kubetrail as a
StatefulSet with its state on a PersistentVolumeClaim, probes on /healthz
and /readyz, handler secrets from a Secret, a Service for /metrics, a pinned
image, non-root and a read-only root filesystem, least-privilege RBAC
(list and watch of exactly the configured resources, no Secrets), and a
config `kubetrail check-config` accepts; the HA overlay adds a second
replica, leader election, its Lease role and a PodDisruptionBudget. Then
both overlays, and the ServiceMonitor component once its CRD exists, are
applied for real with kubectl to the test API server and read back.

usage: test_kustomize.py KUBETRAIL_BINARY
"""
import json, os, shutil, subprocess, sys, tempfile, tomllib, unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
KUSTOMIZE = os.path.join(ROOT, "packaging", "kustomize")
sys.path.insert(0, os.path.join(HERE, "..", "apiserver"))
sys.path.insert(0, HERE)
from harness import ApiServer  # noqa: E402
from pyyaml import yaml  # noqa: E402
from manifests import one  # noqa: E402

KUBETRAIL = None
# Resources kubetrail resolves a [watch] name to (plural, group), for the
# names the shipped configs use.
RESOLVED = {"deployments": ("deployments", "apps"), "statefulsets": ("statefulsets", "apps"),
            "daemonsets": ("daemonsets", "apps"), "services": ("services", ""), "configmaps": ("configmaps", "")}


def render(overlay):
    out = subprocess.run(["kubectl", "kustomize", os.path.join(KUSTOMIZE, overlay)], capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0:
        raise AssertionError("kubectl kustomize %s: %s" % (overlay, out.stderr))
    return [d for d in yaml.safe_load_all(out.stdout) if d]


class Overlays(unittest.TestCase):
    def check_common(self, docs):
        # Everything namespaced is in kubetrail's namespace (an overlay's own
        # resources are outside its base's namespace transformer).
        cluster_scoped = ("Namespace", "ClusterRole", "ClusterRoleBinding")
        for d in docs:
            if d["kind"] not in cluster_scoped:
                self.assertEqual(d["metadata"].get("namespace"), "kubetrail", "%s %s" % (d["kind"], d["metadata"]["name"]))
        sts = one(docs, "StatefulSet", "kubetrail")
        pod = sts["spec"]["template"]["spec"]
        c = pod["containers"][0]
        # The state store on a claim, mounted where the config keeps it.
        claims = [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]]
        self.assertIn("state", claims)
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        self.assertEqual(mounts["state"], "/var/lib/kubetrail")
        cm = one(docs, "ConfigMap")
        config = tomllib.loads(cm["data"]["kubetrail.toml"])
        self.assertTrue(config["state"]["path"].startswith("/var/lib/kubetrail/"))
        self.assertTrue(config["server"]["listen"].startswith("0.0.0.0:"))
        # Probes on the endpoints the daemon serves.
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        # Secrets from a Secret, optional so that a config without one starts.
        refs = [e["secretRef"] for e in c.get("envFrom", []) if "secretRef" in e]
        self.assertEqual(refs, [{"name": "kubetrail-secrets", "optional": True}])
        # A pinned image, non-root, read-only root filesystem.
        self.assertRegex(c["image"], r"^kubetrail:\d+\.\d+\.\d+$")
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"])
        # A Service selecting the pods on the metrics port.
        svc = one(docs, "Service", "kubetrail")
        self.assertEqual(svc["spec"]["ports"][0]["port"], 9090)
        for k, v in svc["spec"]["selector"].items():
            self.assertEqual(sts["spec"]["template"]["metadata"]["labels"].get(k), v)
        # RBAC: list+watch of exactly the configured resources, no Secrets.
        role = one(docs, "ClusterRole", "kubetrail-watch")
        granted = set()
        for rule in role["rules"]:
            self.assertEqual(sorted(rule["verbs"]), ["list", "watch"])
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    granted.add((r, g))
        wanted = {RESOLVED[r] for r in config["watch"]["resources"]}
        self.assertEqual(granted, wanted)
        self.assertNotIn("secrets", {r for r, _ in granted})
        # The config is one kubetrail accepts, with the container's
        # KUBETRAIL_* overrides applied as they are in the pod.
        overrides = {e["name"]: e["value"] for e in c.get("env", []) if e["name"].startswith("KUBETRAIL_")}
        with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
            f.write(cm["data"]["kubetrail.toml"])
            f.flush()
            r = subprocess.run([KUBETRAIL, "check-config", "--schema-only", "--config", f.name],
                               capture_output=True, text=True, timeout=30, env=dict(os.environ, **overrides))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotIn("warning", r.stderr)  # every KUBETRAIL_* variable is one kubetrail reads
        leader = overrides.get("KUBETRAIL_LEADER_ELECTION")
        config.setdefault("leader_election", {})
        if leader is not None:
            config["leader_election"]["enabled"] = leader == "true"
        return sts, config

    def test_single(self):
        docs = render("overlays/single")
        sts, config = self.check_common(docs)
        self.assertEqual(sts["spec"]["replicas"], 1)
        self.assertFalse(config.get("leader_election", {}).get("enabled", False))
        self.assertEqual([d for d in docs if d["kind"] in ("Role", "PodDisruptionBudget")], [])

    def test_ha(self):
        docs = render("overlays/ha")
        sts, config = self.check_common(docs)
        self.assertGreaterEqual(sts["spec"]["replicas"], 2)
        self.assertTrue(config["leader_election"]["enabled"])
        pdb = one(docs, "PodDisruptionBudget", "kubetrail")
        self.assertEqual(pdb["spec"]["minAvailable"], 1)
        role = one(docs, "Role", "kubetrail-leader-election")
        self.assertEqual(role["rules"], [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                          "verbs": ["get", "create", "update"]}])
        binding = one(docs, "RoleBinding", "kubetrail-leader-election")
        self.assertEqual(binding["subjects"][0]["name"], "kubetrail")


class ApplyToApiServer(unittest.TestCase):
    def setUp(self):
        self.server = ApiServer()
        self.env = dict(os.environ, KUBECONFIG=os.path.join(self.server.dir, "kubeconfig-token"))

    def tearDown(self):
        self.server.stop()

    def kubectl(self, *args, check=True):
        r = subprocess.run(["kubectl", *args], capture_output=True, text=True, env=self.env, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError("kubectl %s: %s" % (" ".join(args), r.stderr))
        return r

    def test_apply_overlays_and_servicemonitor(self):
        for overlay in ("overlays/single", "overlays/ha"):
            self.kubectl("apply", "-k", os.path.join(KUSTOMIZE, overlay))
        sts = json.loads(self.kubectl("-n", "kubetrail", "get", "statefulset", "kubetrail", "-o", "json").stdout)
        self.assertEqual(sts["spec"]["replicas"], 2)  # ha applied over single
        self.kubectl("-n", "kubetrail", "get", "poddisruptionbudget", "kubetrail")
        self.kubectl("-n", "kubetrail", "get", "role", "kubetrail-leader-election")
        self.kubectl("get", "clusterrole", "kubetrail-watch")
        # Applying again changes nothing - except that kubectl re-sends a
        # PodDisruptionBudget's selector every time (k8s.io/api marks it
        # patchStrategy=replace), and says "configured" for it against
        # kube-apiserver too.
        again = self.kubectl("apply", "-k", os.path.join(KUSTOMIZE, "overlays/ha")).stdout.splitlines()
        changed = [line for line in again if line.endswith(" configured") or line.endswith(" created")]
        self.assertEqual(changed, ["poddisruptionbudget.policy/kubetrail configured"], again)
        # The ServiceMonitor component, in a cluster that has the CRD.
        crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
               "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                        "names": {"plural": "servicemonitors", "singular": "servicemonitor",
                                  "kind": "ServiceMonitor", "listKind": "ServiceMonitorList"},
                        "versions": [{"name": "v1", "served": True, "storage": True,
                                      "schema": {"openAPIV3Schema": {"type": "object",
                                                                     "x-kubernetes-preserve-unknown-fields": True}}}]}}
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "crd.json"), "w") as f:
                json.dump(crd, f)
            self.kubectl("apply", "-f", os.path.join(d, "crd.json"))
            overlay = os.path.join(d, "with-monitor")
            os.makedirs(overlay)
            shutil.copytree(KUSTOMIZE, os.path.join(d, "kustomize"))
            with open(os.path.join(overlay, "kustomization.yaml"), "w") as f:
                f.write("resources: [../kustomize/overlays/single]\ncomponents: [../kustomize/components/servicemonitor]\n")
            self.kubectl("apply", "-k", overlay)
        sm = json.loads(self.kubectl("-n", "kubetrail", "get", "servicemonitor", "kubetrail", "-o", "json").stdout)
        self.assertEqual(sm["spec"]["endpoints"][0]["port"], "http-metrics")


if __name__ == "__main__":
    KUBETRAIL = sys.argv.pop(1)
    unittest.main(verbosity=2)
