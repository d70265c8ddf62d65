#!/usr/bin/env python3
"""Alerts and dashboard a team can adopt (issue 16, item 5):

- the PrometheusRule (packaging/kustomize/components/prometheusrule) passes
  `promtool check rules` and its unit tests (`promtool test rules`,
  kubetrail-rules.test.yaml: each alert fires on what it names, and only
  then);
- every query of the Grafana dashboard (packaging/grafana) parses as PromQL
  (promtool, through a recording rule per query);
- every metric the rules and the dashboard name is one a real `kubetrail
  run` exports: its /metrics is scraped against the test API server;
- the component renders with kubectl's kustomize into an overlay.

usage: test_monitoring.py KUBETRAIL_BINARY
"""
import http.client, json, os, re, shutil, socket, subprocess, sys, tempfile, time, unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
RULE = os.path.join(ROOT, "packaging", "kustomize", "components", "prometheusrule", "prometheusrule.yaml")
DASHBOARD = os.path.join(ROOT, "packaging", "grafana", "kubetrail-dashboard.json")
sys.path.insert(0, os.path.join(HERE, "..", "apiserver"))
sys.path.insert(0, HERE)
from harness import ApiServer  # noqa: E402
from pyyaml import yaml  # noqa: E402

KUBETRAIL = None
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
METRIC = re.compile(r"\b((?:kubetrail|process)_[a-z_]+)\b")


def promtool(*args):
    r = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


def metric_names(exprs):
    names = set()
    for e in exprs:
        for m in METRIC.findall(e):
            names.add(re.sub(r"_(bucket|sum|count)$", "", m))
    return names


def dashboard_exprs():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def rule_groups():
    with open(RULE) as f:
        return yaml.safe_load(f)["spec"]["groups"]


class Monitoring(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="kubetrail-monitoring-")
        cls.rules = os.path.join(cls.dir, "rules.yaml")
        with open(cls.rules, "w") as f:
            yaml.safe_dump({"groups": rule_groups()}, f)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_rules_check_and_pass_their_unit_tests(self):
        rc, out = promtool("check", "rules", self.rules)
        self.assertEqual(rc, 0, out)
        with open(os.path.join(HERE, "kubetrail-rules.test.yaml")) as f:
            tests = f.read().replace("RULES_FILE", self.rules)
        path = os.path.join(self.dir, "rules.test.yaml")
        with open(path, "w") as f:
            f.write(tests)
        rc, out = promtool("test", "rules", path)
        self.assertEqual(rc, 0, out)
        alerts = {r["alert"] for g in rule_groups() for r in g["rules"]}
        self.assertEqual(alerts, {"KubetrailWatchStalled", "KubetrailDeadLetters", "KubetrailOutboxBacklogGrowing",
                                  "KubetrailNoLeader", "KubetrailHandlerErrors"})
        for alert in alerts:  # every alert has a unit test
            self.assertIn("alertname: " + alert, tests)

    def test_dashboard_queries_parse(self):
        exprs = dashboard_exprs()
        self.assertGreaterEqual(len(exprs), 10)
        path = os.path.join(self.dir, "dashboard-as-rules.yaml")
        with open(path, "w") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
                {"record": "dashboard:query_%d" % i, "expr": e} for i, e in enumerate(exprs)]}]}, f)
        rc, out = promtool("check", "rules", path)
        self.assertEqual(rc, 0, out)

    def test_every_metric_named_is_exported(self):
        named = metric_names(dashboard_exprs()) | metric_names(r["expr"] for g in rule_groups() for r in g["rules"])
        exported = self.scrape()
        self.assertTrue({"kubetrail_change_sets_total", "process_cpu_seconds_total"} <= exported, exported)
        self.assertEqual(named - exported, set(), "named by the dashboard or rules but not exported")

    def scrape(self):
        """The metric families of a real `kubetrail run` (with a handler and
        leader election, so that every family exists) after one change."""
        server = ApiServer("--bookmark-seconds", "0.5")
        work = tempfile.mkdtemp(prefix="kubetrail-monitoring-run-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        config = os.path.join(work, "kubetrail.toml")
        with open(config, "w") as f:
            f.write('[watch]\nresources = ["configmaps"]\n[state]\npath = "%s"\n[server]\nlisten = "127.0.0.1:%d"\n'
                    '[leader_election]\nenabled = true\nnamespace = "default"\nlease_duration_s = 4\n'
                    'renew_deadline_s = 3\nretry_period_s = 1\n'
                    '[[handlers]]\nname = "out"\nplugin = "log"\nconfig = { format = "json", path = "%s" }\n'
                    '[[routes]]\nchain = ["out"]\n' % (os.path.join(work, "state.db"), port,
                                                      os.path.join(work, "out.jsonl")))
        proc = subprocess.Popen([KUBETRAIL, "run", "--config", config, "--kubeconfig",
                                 os.path.join(server.dir, "kubeconfig-token")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            text = ""
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    c.request("GET", "/metrics")
                    text = c.getresponse().read().decode()
                    c.close()
                    if "kubetrail_leader 1" in text and "kubetrail_informers_synced 1" in text:
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            self.assertIn("kubetrail_leader 1", text)
            return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            server.stop()
            shutil.rmtree(work, ignore_errors=True)

    def test_component_renders_into_an_overlay(self):
        overlay = os.path.join(self.dir, "overlay")
        os.makedirs(overlay)
        comps = os.path.join(ROOT, "packaging", "kustomize", "components")
        with open(os.path.join(overlay, "kustomization.yaml"), "w") as f:
            rel = lambda p: json.dumps(os.path.relpath(p, overlay))  # kustomize takes no absolute roots
            f.write("resources: [%s]\ncomponents: [%s, %s]\n" % (
                rel(os.path.join(ROOT, "packaging", "kustomize", "overlays", "single")),
                rel(os.path.join(comps, "servicemonitor")), rel(os.path.join(comps, "prometheusrule"))))
        r = subprocess.run(["kubectl", "kustomize", overlay], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        docs = [d for d in yaml.safe_load_all(r.stdout) if d]
        rule = [d for d in docs if d["kind"] == "PrometheusRule"]
        self.assertEqual(len(rule), 1)
        self.assertEqual(rule[0]["metadata"]["namespace"], "kubetrail")
        self.assertEqual(rule[0]["spec"]["groups"], rule_groups())


if __name__ == "__main__":
    KUBETRAIL = sys.argv.pop(1)
    unittest.main(verbosity=2)
