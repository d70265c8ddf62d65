#!/usr/bin/env python3
"""The Helm chart (issue 16, item 4), rendered by Helm's own engine - Go's
text/template with sprig, built from Debian's Go packages
(packaging/helm/render) - and applied with `kubectl apply --dry-run=server`
to the test API server:

- defaults: one replica as a StatefulSet with its state on a claim, probes,
  a config `kubetrail check-config` accepts with the pod's environment,
  and RBAC of list and watch on exactly what `kubetrail rbac` grants for
  the same config (through the server's discovery);
- replicas=2: leader election on, the Lease's Role, a PodDisruptionBudget;
  secretEnv: a Secret the pod takes its environment from;
- [watch] namespaces: a Role in each, as `kubetrail rbac` prints;
- the ServiceMonitor, PrometheusRule (the kustomize component's rules) and
  dashboard toggles;
- a resource name the chart cannot map is an error naming it.

usage: test_helm.py KUBETRAIL_BINARY
"""
import json, os, shutil, subprocess, sys, tempfile, tomllib, unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CHART = os.path.join(ROOT, "packaging", "helm", "kubetrail")
sys.path.insert(0, os.path.join(HERE, "..", "apiserver"))
sys.path.insert(0, HERE)
from harness import ApiServer  # noqa: E402
from pyyaml import yaml  # noqa: E402
from manifests import one  # noqa: E402

KUBETRAIL = None


def grants(docs, kind):
    """{(namespace, group, resource): verbs} of the Roles or ClusterRoles named *-watch."""
    out = {}
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"].endswith("-watch"):
            for rule in d["rules"]:
                for g in rule["apiGroups"]:
                    for r in rule["resources"]:
                        out[(d["metadata"].get("namespace", ""), g, r)] = sorted(rule["verbs"])
    return out


class Helm(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="kubetrail-helm-")
        cls.render_bin = os.path.join(cls.tmp, "helm-render")
        r = subprocess.run([os.path.join(ROOT, "packaging", "helm", "render", "build.sh"), cls.render_bin],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, "building helm-render: " + r.stderr
        cls.server = ApiServer()
        cls.kubeconfig = os.path.join(cls.server.dir, "kubeconfig-token")
        cls.env = dict(os.environ, KUBECONFIG=cls.kubeconfig)
        # `helm install -n kubetrail --create-namespace`: the namespace first
        # (the test server, like kube-apiserver, refuses objects in a missing one).
        r = subprocess.run(["kubectl", "create", "namespace", "kubetrail"], capture_output=True, text=True,
                           env=cls.env, timeout=60)
        assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def render(self, *sets, check=True):
        args = [self.render_bin, "--name", "kubetrail", "--namespace", "kubetrail"]
        for s in sets:
            args += ["--set", s]
        r = subprocess.run(args + [CHART], capture_output=True, text=True, timeout=60)
        if not check:
            return r
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout, [d for d in yaml.safe_load_all(r.stdout) if d]

    def pod_env(self, sts):
        c = sts["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e["value"] for e in c["env"] if "value" in e}

    def config_of(self, docs):
        return one(docs, "ConfigMap", "kubetrail-config")["data"]["kubetrail.toml"]

    def check_config(self, toml_text, env):
        path = os.path.join(self.tmp, "check.toml")
        with open(path, "w") as f:
            f.write(toml_text)
        r = subprocess.run([KUBETRAIL, "check-config", "--schema-only", "--config", path], capture_output=True,
                           text=True, timeout=30, env=dict(os.environ, **env))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("warning", r.stderr)

    def kubetrail_rbac(self, toml_text):
        path = os.path.join(self.tmp, "rbac.toml")
        with open(path, "w") as f:
            f.write(toml_text)
        r = subprocess.run([KUBETRAIL, "rbac", "--config", path, "--kubeconfig", self.kubeconfig], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [d for d in yaml.safe_load_all(r.stdout) if d]

    def dry_run_apply(self, text):
        path = os.path.join(self.tmp, "rendered.yaml")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run(["kubectl", "-n", "kubetrail", "apply", "--dry-run=server", "-f", path], capture_output=True,
                           text=True, env=self.env, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("statefulset.apps/kubetrail created (server dry run)", r.stdout)
        # A dry run writes nothing.
        got = subprocess.run(["kubectl", "-n", "kubetrail", "get", "statefulset", "kubetrail"], capture_output=True,
                             text=True, env=self.env, timeout=60)
        self.assertIn("NotFound", got.stderr)

    def test_defaults(self):
        text, docs = self.render()
        kinds = sorted(d["kind"] for d in docs)
        self.assertEqual(kinds, ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "Service", "ServiceAccount",
                                 "StatefulSet"])
        sts = one(docs, "StatefulSet", "kubetrail")
        self.assertEqual(sts["spec"]["replicas"], 1)
        pod = sts["spec"]["template"]["spec"]
        c = pod["containers"][0]
        self.assertEqual(c["image"], "kubetrail:0.1.0")
        self.assertEqual([t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]], ["state"])
        self.assertEqual({m["name"]: m["mountPath"] for m in c["volumeMounts"]}["state"], "/var/lib/kubetrail")
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"])
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertNotIn("envFrom", c)
        env = self.pod_env(sts)
        self.assertEqual(env["KUBETRAIL_STATE_PATH"], "/var/lib/kubetrail/state.db")
        self.assertEqual(env["KUBETRAIL_LEADER_ELECTION"], "false")
        svc = one(docs, "Service", "kubetrail")
        for k, v in svc["spec"]["selector"].items():
            self.assertEqual(sts["spec"]["template"]["metadata"]["labels"][k], v)
        toml_text = self.config_of(docs)
        config = tomllib.loads(toml_text)
        self.assertEqual(config["cluster"]["name"], "my-cluster")
        self.check_config(toml_text, env)
        # RBAC: what `kubetrail rbac` grants for the same config, no more.
        self.assertEqual(grants(docs, "ClusterRole"), grants(self.kubetrail_rbac(toml_text), "ClusterRole"))
        self.assertNotIn("secrets", {r for _, _, r in grants(docs, "ClusterRole")})
        self.dry_run_apply(text)

    def test_ha_and_secrets(self):
        text, docs = self.render("replicas=2", "secretEnv.SLACK_WEBHOOK_URL=https://hooks.example.com/T0/B0")
        sts = one(docs, "StatefulSet", "kubetrail")
        self.assertEqual(sts["spec"]["replicas"], 2)
        env = self.pod_env(sts)
        self.assertEqual(env["KUBETRAIL_LEADER_ELECTION"], "true")
        self.assertEqual(env["KUBETRAIL_LEADER_ELECTION_NAMESPACE"], "kubetrail")
        self.assertEqual(one(docs, "PodDisruptionBudget", "kubetrail")["spec"]["minAvailable"], 1)
        role = one(docs, "Role", "kubetrail-leader-election")
        self.assertEqual(role["rules"], [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["kubetrail"],
             "verbs": ["get", "update"]}])
        secret = one(docs, "Secret", "kubetrail-secrets")
        self.assertEqual(secret["stringData"], {"SLACK_WEBHOOK_URL": "https://hooks.example.com/T0/B0"})
        c = sts["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(c["envFrom"], [{"secretRef": {"name": "kubetrail-secrets"}}])
        self.check_config(self.config_of(docs), env)
        # Leader election as kubetrail rbac grants it (its Role names the Lease).
        printed = one(self.kubetrail_rbac(self.config_of(docs) + "[leader_election]\nenabled = true\n"
                                          'namespace = "kubetrail"\n'), "Role", "kubetrail-leader-election")
        flat = lambda rules: sorted((tuple(r.get("resourceNames", [])), tuple(sorted(r["verbs"]))) for r in rules)
        self.assertEqual(flat(role["rules"]), flat(printed["rules"]))
        self.dry_run_apply(text)

    def test_watched_namespaces_get_roles(self):
        _, docs = self.render("config.watch.namespaces={shop,payments}", "config.watch.resources={deployments,namespaces,cm}")
        toml_text = self.config_of(docs)
        printed = self.kubetrail_rbac(toml_text)
        self.assertEqual(grants(docs, "Role"), grants(printed, "Role"))
        self.assertEqual(grants(docs, "ClusterRole"), grants(printed, "ClusterRole"))
        self.assertEqual({ns for ns, _, _ in grants(docs, "Role")}, {"shop", "payments"})
        self.assertEqual(set(grants(docs, "ClusterRole")), {("", "", "namespaces")})

    def test_without_persistence_the_state_is_on_an_empty_dir(self):
        _, docs = self.render("persistence.enabled=false")
        sts = one(docs, "StatefulSet", "kubetrail")
        self.assertNotIn("volumeClaimTemplates", sts["spec"])
        volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
        self.assertEqual(volumes["state"], {"name": "state", "emptyDir": {}})
        self.assertEqual(self.pod_env(sts)["KUBETRAIL_STATE_PATH"], "/var/lib/kubetrail/state.db")

    def test_monitoring_toggles(self):
        _, docs = self.render()
        self.assertEqual([d for d in docs if d["kind"] in ("ServiceMonitor", "PrometheusRule")], [])
        _, docs = self.render("serviceMonitor.enabled=true", "prometheusRule.enabled=true", "dashboard.enabled=true")
        sm = one(docs, "ServiceMonitor", "kubetrail")
        self.assertEqual(sm["spec"]["endpoints"][0]["port"], "http-metrics")
        rule = one(docs, "PrometheusRule", "kubetrail")
        with open(os.path.join(ROOT, "packaging", "kustomize", "components", "prometheusrule",
                               "prometheusrule.yaml")) as f:
            self.assertEqual(rule["spec"], yaml.safe_load(f)["spec"])
        dash = one(docs, "ConfigMap", "kubetrail-dashboard")
        self.assertEqual(dash["metadata"]["labels"]["grafana_dashboard"], "1")
        with open(os.path.join(ROOT, "packaging", "grafana", "kubetrail-dashboard.json")) as f:
            self.assertEqual(json.loads(dash["data"]["kubetrail-dashboard.json"]), json.load(f))

    def test_an_unknown_resource_name_is_an_error_naming_it(self):
        r = self.render("config.watch.resources={deployments,widgetz}", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('"widgetz" is not a built-in name the chart knows', r.stderr)
        _, docs = self.render("config.watch.resources={widgets.example.com,*.cert-manager.io}")
        self.assertEqual(set(grants(docs, "ClusterRole")), {("", "example.com", "widgets"),
                                                            ("", "cert-manager.io", "*")})


if __name__ == "__main__":
    KUBETRAIL = sys.argv.pop(1)
    unittest.main(verbosity=2)
