#!/usr/bin/env python3
"""Proof that the test API server behaves like a real kube-apiserver: the
real kubectl (/usr/bin/kubectl) drives it through create, get, watch, scale,
set image, label, patch, delete, api-resources and a CRD, over HTTPS with
token and client-certificate auth. Bounded: every kubectl call has a
timeout and the server exits by itself."""
import json, os, subprocess, sys, time, unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import KUBECTL, ApiServer  # noqa: E402


class KubectlFidelity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = ApiServer()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def kubectl(self, *args, kubeconfig="kubeconfig-token", check=True, timeout=30):
        env = dict(os.environ, KUBECONFIG=os.path.join(self.server.dir, kubeconfig))
        r = subprocess.run([KUBECTL] + list(args), env=env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            self.fail("kubectl %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
        return r

    def get(self, *args):
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def test_1_version_and_discovery(self):
        out = self.kubectl("version", "-o", "json").stdout
        self.assertEqual(json.loads(out)["serverVersion"]["gitVersion"], "v1.32.0-kubetrail-test")
        res = self.kubectl("api-resources", "--no-headers").stdout
        self.assertRegex(res, r"(?m)^deployments\s+deploy\s+apps/v1\s+true\s+Deployment$")
        self.assertRegex(res, r"(?m)^configmaps\s+cm\s+v1\s+true\s+ConfigMap$")
        self.assertRegex(res, r"(?m)^namespaces\s+ns\s+v1\s+false\s+Namespace$")
        # kubectl asked for aggregated discovery and took the server's answer:
        # it never needed a group-version document.
        seen = self.server.requests()
        self.assertTrue(any(r["path"] == "/apis" and "as=APIGroupDiscoveryList" in r["accept"] for r in seen))
        self.assertEqual([r["path"] for r in seen if r["path"].startswith(("/apis/apps", "/api/v1"))], [])

    def test_2_lifecycle_with_a_watch(self):
        env = dict(os.environ, KUBECONFIG=os.path.join(self.server.dir, "kubeconfig-token"))
        self.kubectl("create", "deployment", "web", "--image=nginx:1.25", "--replicas=2")
        d = self.get("deployment", "web", "--show-managed-fields")
        md = d["metadata"]
        self.assertEqual((d["kind"], d["apiVersion"], md["namespace"]), ("Deployment", "apps/v1", "default"))
        for key in ("uid", "creationTimestamp", "resourceVersion", "generation", "managedFields"):
            self.assertIn(key, md)
        self.assertEqual(md["managedFields"][0]["manager"], "kubectl-create")
        self.assertEqual(d["spec"]["replicas"], 2)
        rv0 = int(md["resourceVersion"])

        watch = subprocess.Popen([KUBECTL, "get", "deployment", "web", "--watch", "--output-watch-events", "-o",
                                  "json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.5)
            self.kubectl("scale", "deployment/web", "--replicas=3")
            self.kubectl("set", "image", "deployment/web", "nginx=nginx:1.27")
            self.kubectl("label", "deployment/web", "tier=frontend")
            self.kubectl("patch", "deployment", "web", "--type=merge", "-p", '{"spec":{"minReadySeconds":5}}')
            self.kubectl("patch", "deployment", "web", "--type=json",
                         "-p", '[{"op":"add","path":"/metadata/annotations","value":{"owner":"shop"}}]')
            d = self.get("deployment", "web", "--show-managed-fields")
            self.assertEqual(d["spec"]["replicas"], 3)
            self.assertEqual(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27")
            self.assertEqual(d["metadata"]["labels"]["tier"], "frontend")
            self.assertEqual(d["spec"]["minReadySeconds"], 5)
            self.assertEqual(d["metadata"]["annotations"], {"owner": "shop"})
            self.assertGreater(d["metadata"]["generation"], 1)
            managers = {m["manager"] for m in d["metadata"]["managedFields"]}
            self.assertTrue({"kubectl-create", "kubectl-set", "kubectl-label", "kubectl-patch"} <= managers, managers)
            self.kubectl("delete", "deployment", "web", timeout=60)
            self.assertIn("NotFound", self.kubectl("get", "deployment", "web", check=False).stderr)
            time.sleep(1.5)
        finally:
            watch.kill()
            out, _ = watch.communicate(timeout=10)
        events = []
        dec = json.JSONDecoder()
        i = 0
        while i < len(out):
            while i < len(out) and out[i].isspace():
                i += 1
            if i >= len(out):
                break
            e, i = dec.raw_decode(out, i)
            events.append(e)
        types = [e["type"] for e in events]
        self.assertEqual(types[0], "ADDED")
        self.assertEqual(types.count("MODIFIED"), 5, types)
        self.assertEqual(types[-1], "DELETED")
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        self.assertEqual(rvs, sorted(rvs))
        self.assertGreater(rvs[1], rv0)

    def test_3_optimistic_concurrency_and_errors(self):
        self.kubectl("create", "configmap", "cfg", "--from-literal=a=1")
        cm = self.get("configmap", "cfg")
        stale = dict(cm)
        self.kubectl("patch", "configmap", "cfg", "--type=merge", "-p", '{"data":{"a":"2"}}')
        path = os.path.join(self.server.dir, "stale.json")
        with open(path, "w") as f:
            json.dump(stale, f)
        r = self.kubectl("replace", "-f", path, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("the object has been modified", r.stderr)
        r = self.kubectl("create", "configmap", "cfg", "--from-literal=a=1", check=False)
        self.assertIn('configmaps "cfg" already exists', r.stderr)

    def test_4_pagination_and_selectors(self):
        for i in range(7):
            self.kubectl("create", "configmap", "page-%d" % i, "--from-literal=i=%d" % i)
            self.kubectl("label", "configmap", "page-%d" % i, "parity=%s" % ("even" if i % 2 == 0 else "odd"))
        names = self.kubectl("get", "configmaps", "--chunk-size=2", "-l", "parity=even", "-o",
                             "jsonpath={.items[*].metadata.name}").stdout.split()
        self.assertEqual(names, ["page-0", "page-2", "page-4", "page-6"])
        one = self.kubectl("get", "configmaps", "--field-selector", "metadata.name=page-3", "-o", "name").stdout
        self.assertEqual(one.strip(), "configmap/page-3")

    def test_5_client_certificate_auth_and_wrong_token(self):
        r = self.kubectl("get", "namespaces", kubeconfig="kubeconfig-cert", check=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        bad = os.path.join(self.server.dir, "kubeconfig-bad")
        with open(os.path.join(self.server.dir, "kubeconfig-token")) as f:
            text = f.read()
        with open(bad, "w") as f:
            f.write(text.replace("token: ", "token: wrong-"))
        r = self.kubectl("get", "configmaps", kubeconfig="kubeconfig-bad", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Unauthorized", r.stderr)

    def manifest(self, name, obj):
        path = os.path.join(self.server.dir, name)
        with open(path, "w") as f:
            json.dump(obj, f)
        return path

    def managers(self, *args):
        got = self.get("--show-managed-fields", *args)
        return {(m["manager"], m["operation"]): m.get("fieldsV1", {}) for m in got["metadata"]["managedFields"]}

    # Failed before 2026-12-04: the test server answered 415 to
    # application/apply-patch+yaml, and recorded fieldsV1 as {}.
    def test_7_server_side_apply(self):
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "labels": {"app": "shop"}},
              "data": {"a": "1", "keep": "x"}}
        path = self.manifest("ssa.json", cm)
        r = self.kubectl("apply", "--server-side", "-f", path)
        self.assertIn("configmap/ssa serverside-applied", r.stdout)
        self.assertEqual(self.managers("configmap", "ssa"), {("kubectl", "Apply"): {
            "f:data": {"f:a": {}, "f:keep": {}}, "f:metadata": {"f:labels": {"f:app": {}}}}})
        # The same apply again changes nothing: no new resourceVersion.
        rv = self.get("configmap", "ssa")["metadata"]["resourceVersion"]
        self.kubectl("apply", "--server-side", "-f", path)
        self.assertEqual(self.get("configmap", "ssa")["metadata"]["resourceVersion"], rv)
        # An update takes the field it changes from the applier, silently.
        self.kubectl("patch", "configmap", "ssa", "--type=merge", "-p", '{"data":{"a":"2"}}')
        owners = self.managers("configmap", "ssa")
        self.assertEqual(owners[("kubectl-patch", "Update")], {"f:data": {"f:a": {}}})
        self.assertEqual(owners[("kubectl", "Apply")], {"f:data": {"f:keep": {}},
                                                        "f:metadata": {"f:labels": {"f:app": {}}}})
        # Applying the old value now conflicts, naming the manager and field.
        r = self.kubectl("apply", "--server-side", "-f", path, check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .data.a', r.stderr)
        self.assertEqual(self.get("configmap", "ssa")["data"]["a"], "2")
        # A different manager applying the same value shares ownership.
        self.kubectl("apply", "--server-side", "--field-manager=argocd", "-f",
                     self.manifest("ssa-argo.json", dict(cm, data={"keep": "x"}, metadata={"name": "ssa"})))
        self.assertEqual(self.managers("configmap", "ssa")[("argocd", "Apply")], {"f:data": {"f:keep": {}}})
        # --force-conflicts takes the field over; the manager left owning
        # nothing leaves managedFields.
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", path)
        self.assertEqual(self.get("configmap", "ssa")["data"]["a"], "1")
        self.assertNotIn(("kubectl-patch", "Update"), self.managers("configmap", "ssa"))
        # Fields the applier drops from its configuration leave the object,
        # unless another manager owns them too.
        self.kubectl("apply", "--server-side", "-f",
                     self.manifest("ssa2.json", dict(cm, metadata={"name": "ssa"}, data={"b": "3"})))
        got = self.get("configmap", "ssa")
        self.assertEqual(got["data"], {"keep": "x", "b": "3"})
        self.assertNotIn("labels", got["metadata"])
        # Keyed lists merge by key, and a conflict inside one names the element.
        self.kubectl("create", "deployment", "ssa-web", "--image=nginx:1.25")
        dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa-web"},
               "spec": {"selector": {"matchLabels": {"app": "ssa-web"}},
                        "template": {"metadata": {"labels": {"app": "ssa-web"}},
                                     "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}}
        r = self.kubectl("apply", "--server-side", "-f", self.manifest("ssa-dep.json", dep), check=False)
        self.assertIn('conflict with "kubectl-create" using apps/v1: '
                      '.spec.template.spec.containers[name="nginx"].image', r.stderr)
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", self.manifest("ssa-dep.json", dep))
        got = self.get("deployment", "ssa-web")
        self.assertEqual([c["image"] for c in got["spec"]["template"]["spec"]["containers"]], ["nginx:1.27"])
        applied = self.managers("deployment", "ssa-web")[("kubectl", "Apply")]
        self.assertIn('k:{"name":"nginx"}', applied["f:spec"]["f:template"]["f:spec"]["f:containers"])
        # A missing object is created by an apply (201), owned by it alone.
        r = self.kubectl("apply", "--server-side", "-f",
                         self.manifest("ssa-new.json", dict(cm, metadata={"name": "ssa-new"})))
        self.assertIn("configmap/ssa-new serverside-applied", r.stdout)
        self.assertEqual(list(self.managers("configmap", "ssa-new")), [("kubectl", "Apply")])

    # Failed before 2026-12-04: stringData was stored as sent.
    def test_8_secret_string_data_folds_into_data(self):
        import base64
        sec = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
               "data": {"user": base64.b64encode(b"old").decode(), "other": base64.b64encode(b"o").decode()},
               "stringData": {"user": "admin", "token": "s3cret"}}
        self.kubectl("apply", "-f", self.manifest("secret.json", sec))
        got = self.get("secret", "creds")
        self.assertNotIn("stringData", got)
        self.assertEqual({k: base64.b64decode(v).decode() for k, v in got["data"].items()},
                         {"user": "admin", "token": "s3cret", "other": "o"})
        sec2 = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds-ssa"},
                "stringData": {"token": "t0ken"}}
        self.kubectl("apply", "--server-side", "-f", self.manifest("secret2.json", sec2))
        got = self.get("secret", "creds-ssa")
        self.assertEqual(got["data"], {"token": base64.b64encode(b"t0ken").decode()})
        self.assertNotIn("stringData", got)

    def test_9_rbac_api_and_can_i(self):
        # The RBAC API and an authorizer that answers kubectl auth can-i as
        # kube-apiserver's RBAC authorizer does (deny unless a rule allows).
        self.kubectl("create", "namespace", "team")
        self.kubectl("create", "serviceaccount", "reader", "-n", "team")
        self.kubectl("create", "role", "pod-reader", "-n", "team", "--verb=list,watch", "--resource=pods")
        self.kubectl("create", "rolebinding", "pod-reader", "-n", "team", "--role=pod-reader",
                     "--serviceaccount=team:reader")
        self.kubectl("create", "clusterrole", "ns-lister", "--verb=list", "--resource=namespaces")
        self.kubectl("create", "clusterrolebinding", "ns-lister", "--clusterrole=ns-lister",
                     "--serviceaccount=team:reader")
        who = "--as=system:serviceaccount:team:reader"
        def can(*args):
            r = self.kubectl("auth", "can-i", who, *args, check=False)
            return r.stdout.strip()
        self.assertEqual(can("list", "pods", "-n", "team"), "yes")
        self.assertEqual(can("watch", "pods", "-n", "team"), "yes")
        self.assertEqual(can("delete", "pods", "-n", "team"), "no")
        self.assertEqual(can("list", "pods", "-n", "default"), "no")
        self.assertEqual(can("list", "secrets", "-n", "team"), "no")
        self.assertEqual(can("list", "namespaces"), "yes")
        self.assertEqual(can("delete", "namespaces"), "no")
        self.assertEqual(self.get("role", "pod-reader", "-n", "team")["rules"],
                         [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}])

    # Failed before 2026-12-04: the test server created objects in any
    # namespace, so tests passed that fail against a real cluster.
    def test_a_namespace_lifecycle(self):
        got = {n["metadata"]["name"] for n in self.get("namespaces")["items"]}
        self.assertTrue({"default", "kube-system", "kube-public", "kube-node-lease"} <= got)
        r = self.kubectl("create", "configmap", "c", "-n", "no-such-ns", "--from-literal=a=1", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('namespaces "no-such-ns" not found', r.stderr)
        r = self.kubectl("create", "configmap", "c", "-n", "no-such-ns", "--from-literal=a=1", "--dry-run=server",
                         check=False)
        self.assertIn('namespaces "no-such-ns" not found', r.stderr)
        self.kubectl("create", "namespace", "fresh")
        ns = self.get("namespace", "fresh")
        self.assertEqual(ns["metadata"]["labels"], {"kubernetes.io/metadata.name": "fresh"})
        self.assertEqual((ns["spec"], ns["status"]), ({"finalizers": ["kubernetes"]}, {"phase": "Active"}))
        self.kubectl("create", "configmap", "c", "-n", "fresh", "--from-literal=a=1")

    # Failed before 2026-12-04: the test server never compressed, though
    # kube-apiserver gzips every response over 128 KiB for a client that
    # accepts gzip (kubectl always does).
    def test_b_large_responses_are_gzipped_for_clients_that_accept_it(self):
        import gzip, http.client, ssl
        self.kubectl("create", "namespace", "big")
        for i in range(40):
            self.kubectl("create", "configmap", "big-%d" % i, "-n", "big", "--from-literal=blob=" + "x%d" % i * 2000)
        self.assertEqual(len(self.get("configmaps", "-n", "big")["items"]), 40)  # kubectl inflates it

        def fetch(path, accept_gzip):
            ctx = ssl.create_default_context(cafile=os.path.join(self.server.dir, "ca.crt"))
            c = http.client.HTTPSConnection("127.0.0.1", self.server.port, context=ctx, timeout=10)
            headers = {"Authorization": "Bearer test-token"}
            if accept_gzip:
                headers["Accept-Encoding"] = "gzip"
            c.request("GET", path, headers=headers)
            r = c.getresponse()
            body = r.read()
            c.close()
            return r.getheader("Content-Encoding"), body
        encoding, body = fetch("/api/v1/namespaces/big/configmaps", True)
        self.assertEqual(encoding, "gzip")
        self.assertEqual(len(json.loads(gzip.decompress(body))["items"]), 40)
        encoding, body = fetch("/api/v1/namespaces/big/configmaps", False)
        self.assertIsNone(encoding)
        self.assertGreater(len(body), 128 * 1024)
        encoding, _ = fetch("/api/v1/namespaces/big/configmaps/big-0", True)  # small: as is
        self.assertIsNone(encoding)

    def test_6_crd_created_and_served(self):
        crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "widgets.example.com"},
               "spec": {"group": "example.com", "scope": "Namespaced",
                        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wg"]},
                        "versions": [{"name": "v1", "served": True, "storage": True,
                                      "schema": {"openAPIV3Schema": {"type": "object",
                                                                     "x-kubernetes-preserve-unknown-fields": True}}}]}}
        path = os.path.join(self.server.dir, "crd.json")
        with open(path, "w") as f:
            json.dump(crd, f)
        self.kubectl("create", "-f", path)
        w = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "blue"}, "spec": {"size": 3}}
        path = os.path.join(self.server.dir, "w.json")
        with open(path, "w") as f:
            json.dump(w, f)
        self.kubectl("create", "-f", path)
        got = self.get("widgets.example.com", "blue")
        self.assertEqual(got["spec"]["size"], 3)
        # Custom resources are unstructured: their list items do carry
        # apiVersion and kind, and every map's keys come sorted.
        import http.client, ssl
        ctx = ssl.create_default_context(cafile=os.path.join(self.server.dir, "ca.crt"))
        c = http.client.HTTPSConnection("127.0.0.1", self.server.port, context=ctx, timeout=10)
        c.request("GET", "/apis/example.com/v1/namespaces/default/widgets", headers={"Authorization": "Bearer test-token"})
        item = json.loads(c.getresponse().read())["items"][0]
        c.close()
        self.assertEqual(list(item)[:2], ["apiVersion", "kind"])
        self.assertEqual(list(item), sorted(item))
        # And kubectl, like client-go, puts kind/apiVersion back into the
        # items of a built-in list it prints, though the server sent none.
        self.kubectl("create", "configmap", "printed-shape", "--from-literal=a=1")
        printed = self.get("configmaps")["items"]
        self.assertTrue(printed)
        for it in printed:
            self.assertEqual((it.get("kind"), it.get("apiVersion")), ("ConfigMap", "v1"))
        self.assertIn("blue", self.kubectl("get", "wg").stdout)
        self.assertRegex(self.kubectl("api-resources", "--api-group=example.com", "--no-headers").stdout,
                         r"widgets\s+wg\s+example.com/v1\s+true\s+Widget")


class WatchProtocol(unittest.TestCase):
    """The watch behaviours kubetrail's informer relies on, checked with a
    plain HTTPS client: bookmarks, timeoutSeconds, 410 for an expired
    resourceVersion (as an ERROR event, like the real watch cache), and the
    test controls that cut watches."""

    @classmethod
    def setUpClass(cls):
        cls.server = ApiServer("--history", "5", "--bookmark-seconds", "0.3")

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def request(self, method, path, body=None, timeout=10):
        import http.client, ssl
        ctx = ssl.create_default_context(cafile=os.path.join(self.server.dir, "ca.crt"))
        c = http.client.HTTPSConnection("127.0.0.1", self.server.port, context=ctx, timeout=timeout)
        headers = {"Authorization": "Bearer test-token", "Content-Type": "application/json"}
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body)
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        status, body = r.status, r.read().decode()
        c.close()
        return status, body

    def watch_events(self, query, timeout=10):
        status, body = self.request("GET", "/api/v1/namespaces/default/configmaps?watch=1&" + query, timeout=timeout)
        self.assertEqual(status, 200)
        return [json.loads(line) for line in body.splitlines() if line]

    def test_bookmarks_timeout_and_410(self):
        status, created = self.request("POST", "/api/v1/namespaces/default/configmaps",
                                       {"metadata": {"name": "w0"}, "data": {"a": "1"}})
        self.assertEqual(status, 201)
        rv = json.loads(created)["metadata"]["resourceVersion"]
        start = time.time()
        events = self.watch_events("resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=1" % rv)
        self.assertLess(time.time() - start, 5)
        self.assertIn("BOOKMARK", [e["type"] for e in events])
        self.assertEqual(events[-1]["object"]["metadata"]["resourceVersion"], rv)
        for i in range(1, 8):  # overflow the 5-event history
            self.request("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "w%d" % i}})
        events = self.watch_events("resourceVersion=%s&timeoutSeconds=1" % rv)
        self.assertEqual(events[0]["type"], "ERROR")
        self.assertEqual(events[0]["object"]["code"], 410)
        self.assertEqual(events[0]["object"]["reason"], "Expired")
        status, body = self.request("GET", "/api/v1/namespaces/default/configmaps?limit=2")
        token = json.loads(body)["metadata"]["continue"]
        # A compaction past the token's revision (etcd keeps the revision it
        # compacts at: a token of exactly that revision would still be good).
        self.request("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "w-after"}})
        self.request("POST", "/testing/expire-history")
        status, body = self.request("GET", "/api/v1/namespaces/default/configmaps?limit=2&continue=" + token)
        self.assertEqual(status, 410)
        self.assertEqual(json.loads(body)["reason"], "Expired")

    def test_a_fresh_list_after_a_compaction_can_be_watched(self):
        # kube-apiserver never answers 410 to a watch from the resourceVersion
        # of a list it just made: the test server's expire-history once did,
        # which made a tight list+410 loop look like the server's fault.
        self.request("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "compact-a"}})
        self.request("POST", "/testing/expire-history")
        events = self.watch_events("resourceVersion=1&timeoutSeconds=1")  # the force_gone shot, and old anyway
        self.assertEqual(events[0]["type"], "ERROR")
        status, body = self.request("GET", "/api/v1/namespaces/default/configmaps")
        rv = json.loads(body)["metadata"]["resourceVersion"]
        events = self.watch_events("resourceVersion=%s&timeoutSeconds=1" % rv)
        self.assertNotIn("ERROR", [e["type"] for e in events])

    def test_object_shapes_are_kube_apiservers(self):
        # Byte shapes kube-apiserver gives built-in types (Go structs): a
        # single object and a watch object start with kind, then apiVersion;
        # the items of a list carry neither (the List does). kubetrail once
        # reported "add kind", "add apiVersion" on every object's first change
        # against a real server because this server put them into list items.
        status, created = self.request("POST", "/api/v1/namespaces/default/configmaps",
                                       {"metadata": {"name": "shape"}, "data": {"a": "1"}})
        self.assertEqual(status, 201)
        self.assertTrue(created.startswith('{"kind":"ConfigMap","apiVersion":"v1",'), created[:60])
        status, body = self.request("GET", "/api/v1/namespaces/default/configmaps/shape")
        self.assertTrue(body.startswith('{"kind":"ConfigMap","apiVersion":"v1",'), body[:60])
        status, body = self.request("GET", "/api/v1/namespaces/default/configmaps?limit=500")
        lst = json.loads(body)
        self.assertEqual((lst["kind"], lst["apiVersion"]), ("ConfigMapList", "v1"))
        self.assertTrue(lst["items"])
        for item in lst["items"]:
            self.assertNotIn("kind", item)
            self.assertNotIn("apiVersion", item)
        # An empty list still has its items, as [] (the etcd3 store never
        # leaves them nil): kubetrail takes an answer without an items array
        # for no list at all, rather than for "everything is gone".
        status, body = self.request("GET", "/api/v1/namespaces/nothing-here/configmaps?limit=500")
        self.assertEqual(status, 200)
        self.assertTrue(body.endswith(',"items":[]}') or body.endswith(',"items":[]}\n'), body[-40:])
        # A watch with no resourceVersion starts with ADDED for what exists.
        status, body = self.request("GET", "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1")
        line = next(l for l in body.splitlines() if '"shape"' in l)
        self.assertTrue(line.startswith('{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1",'), line[:80])
        # Strings as Go's encoding/json writes them: UTF-8 as it is, and <, >,
        # & (and U+2028/9) escaped - "a && b" arrives as "a \u0026\u0026 b".
        # kubetrail parses escaped bytes on another path (hollow_parse.hpp);
        # this server once wrote Python's shape (\u00e9, a raw &).
        value = "a && b <x> caf\u00e9 \u2028"
        written = '"a \\u0026\\u0026 b \\u003cx\\u003e caf\u00e9 \\u2028"'
        status, created = self.request("POST", "/api/v1/namespaces/default/configmaps",
                                       {"metadata": {"name": "go-strings"}, "data": {"s": value}})
        self.assertEqual(status, 201)
        self.assertIn(written, created)
        status, body = self.request("GET", "/api/v1/namespaces/default/configmaps/go-strings")
        self.assertIn(written, body)
        self.assertEqual(json.loads(body)["data"]["s"], value)
        status, body = self.request("GET", "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1")
        self.assertIn(written, next(l for l in body.splitlines() if '"go-strings"' in l))

    def test_a_custom_resource_as_deep_as_kube_apiserver_takes(self):
        # kube-apiserver decodes a body with Go's encoding/json: 10,000 levels
        # of nesting in all, one more is "exceeded max depth" (400). A custom
        # resource with preserved unknown fields can be that deep, and is
        # served back whole in a get, a list and a watch. The test server
        # once failed with a 500 (Python's RecursionError) at 500 levels,
        # after storing the object - so nothing of that kind could be listed
        # again - and kubetrail's handling of deep objects could not be
        # tested end to end. kubectl (Go) reads the 10,000-level object back,
        # and fails on its own with "exceeded max depth" on the list, which
        # adds two levels: what it does against a real server.
        status, _ = self.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "deeps.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "deeps", "singular": "deep", "kind": "Deep"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                         "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}})
        self.assertEqual(status, 201)

        def deep(name, arrays):  # nesting in all: the object, spec, then the arrays
            return ('{"apiVersion":"example.com/v1","kind":"Deep","metadata":{"name":"%s"},"spec":{"x":%s}}'
                    % (name, "[" * arrays + "]" * arrays)).encode()
        nested = b"[" * 9998 + b"]" * 9998
        path = "/apis/example.com/v1/namespaces/default/deeps"
        status, body = self.request("POST", path, deep("d1", 9998))
        self.assertEqual(status, 201, body[:300])
        self.assertIn('"x":' + nested.decode() + "}", body)
        status, body = self.request("POST", path, deep("d2", 9999))
        self.assertEqual(status, 400, body[:300])
        self.assertEqual(json.loads(body)["reason"], "BadRequest")
        # Go's own words and byte offset (kubectl's decoder, the same
        # scanner, says exactly this of the same file).
        self.assertIn("json: offset 10081: invalid character '[' exceeded max depth", json.loads(body)["message"])
        self.assertEqual(self.request("GET", path + "/d2")[0], 404)
        for query in ("", "?watch=1&timeoutSeconds=1"):
            status, body = self.request("GET", path + query)
            self.assertEqual(status, 200, body[:300])
            self.assertEqual(body.count('"name":"d1"'), 1)
            self.assertIn('"x":' + nested.decode() + "}", body)
        kubectl = self.server.kubectl
        self.assertEqual(kubectl("get", "deep", "d1", "-o", "jsonpath={.metadata.name}").stdout, "d1")
        listed = kubectl("get", "deeps", "-o", "name", check=False)
        self.assertNotEqual(listed.returncode, 0)
        self.assertIn("exceeded max depth", listed.stderr)
        self.assertNotIn("InternalError", listed.stderr)

    def test_cut_watches(self):
        import http.client, threading
        result = {}

        def watch():
            try:
                self.watch_events("timeoutSeconds=30", timeout=20)
                result["ended"] = "cleanly"
            except http.client.IncompleteRead:
                result["ended"] = "cut"  # no final chunk: a dropped connection, as intended
        t = threading.Thread(target=watch)
        start = time.time()
        t.start()
        time.sleep(0.5)
        self.request("POST", "/testing/cut-watches")
        t.join(timeout=15)
        self.assertFalse(t.is_alive())
        self.assertEqual(result.get("ended"), "cut")
        self.assertLess(time.time() - start, 10)


if __name__ == "__main__":
    unittest.main(verbosity=2)
