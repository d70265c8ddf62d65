#!/usr/bin/env python3
"""The change API (issue 17) end to end: `kubetrail run` against the test API
server, changes made by the real kubectl, and what /api/v1/changes, the SSE
stream, `kubetrail history --server` and `kubetrail dead-letters` say about
them - checked against what kubectl did, never against kubetrail's own log.

usage: test_history_api.py KUBETRAIL_BINARY
"""
import http.client, json, os, subprocess, sys, time, unittest, urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_run  # noqa: E402
from test_run import ApiServer, Kubetrail, free_port, wait_for  # noqa: E402


def request(port, method, path, headers=None, host="127.0.0.1"):
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return r.status, body


def get_json(port, path, headers=None):
    status, body = request(port, "GET", path, headers)
    assert status == 200, "%s: %s %s" % (path, status, body)
    return json.loads(body)


class SseReader:
    """Reads Server-Sent Events from the stream, a bounded wait per event."""

    def __init__(self, port, query="", last_event_id=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self.conn.request("GET", "/api/v1/changes/stream" + query, headers=headers)
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.status
        assert self.resp.getheader("Content-Type").startswith("text/event-stream")

    def events(self, n, timeout=20):
        out, event = [], {}
        deadline = time.time() + timeout
        while len(out) < n:
            assert time.time() < deadline, "timed out with %d of %d events" % (len(out), n)
            line = self.resp.fp.readline().decode()
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if line.startswith("id: "):
                event["id"] = line[4:]
            elif line.startswith("data: "):
                event["data"] = json.loads(line[6:])
            elif line == "" and "data" in event:
                out.append(event)
                event = {}
        return out

    def close(self):
        self.conn.close()


class ChangeApi(unittest.TestCase):
    def setUp(self):
        self.server = ApiServer("--bookmark-seconds", "0.5")
        self.kt = None
        self.port = free_port()
        self.state = os.path.join(self.server.dir, "state.db")

    def tearDown(self):
        if self.kt:
            self.kt.stop()
        self.server.stop()

    def start(self, server_toml=None, handlers="", env=None):
        server_toml = server_toml or '[server]\nlisten = "127.0.0.1:%d"\n' % self.port
        extra = '[state]\npath = "%s"\n%s%s' % (self.state, server_toml, handlers)
        old = dict(os.environ)
        os.environ.update(env or {})
        try:
            self.kt = Kubetrail(self.server, ["configmaps", "deployments"], extra=extra)
        finally:
            os.environ.clear()
            os.environ.update(old)
        self.kt.wait_ready()
        return self.kt

    def cli(self, *args, env=None):
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run([test_run.KUBETRAIL] + list(args), capture_output=True, text=True, timeout=60, env=e)

    def test_changes_are_listed_filtered_and_paged_newest_first(self):
        k = self.server.kubectl
        self.start()
        for i in range(7):
            k("create", "configmap", "cm-%d" % i, "--from-literal=a=%d" % i)
        k("create", "namespace", "other")
        k("-n", "other", "create", "configmap", "elsewhere", "--from-literal=a=1")
        k("create", "deployment", "web", "--image=nginx:1.0")
        k("set", "image", "deployment/web", "nginx=nginx:1.1")
        wait_for(lambda: len(self.kt.changes()) >= 10, what="10 change sets delivered")
        delivered = {c["id"]: c for c in self.kt.changes()}
        # Pages of three through everything: each delivered change set once,
        # newest first, exactly as delivered.
        seen, cursor = [], None
        for _ in range(20):
            q = "?limit=3" + ("&cursor=" + urllib.parse.quote(cursor) if cursor else "")
            page = get_json(self.port, "/api/v1/changes" + q)
            seen += page["items"]
            cursor = page.get("nextCursor")
            if not cursor:
                break
        self.assertEqual(sorted(c["id"] for c in seen), sorted(delivered))
        self.assertEqual([c for c in seen], sorted(seen, key=lambda c: c["observedAt"], reverse=True))
        for c in seen:
            self.assertEqual(c, delivered[c["id"]])
        # Filters: the CLI's names.
        other = get_json(self.port, "/api/v1/changes?namespace=other")["items"]
        self.assertEqual([c["name"] for c in other], ["elsewhere"])
        image = get_json(self.port, "/api/v1/changes?resource=deployments&path=" +
                         urllib.parse.quote("spec.template.spec.containers[*].image"))["items"]
        self.assertEqual([(c["type"], c["name"]) for c in image], [("Modified", "web")])
        self.assertEqual(image[0]["actor"]["manager"], "kubectl-set")
        self.assertEqual(get_json(self.port, "/api/v1/changes?actor=nobody")["items"], [])
        status, body = request(self.port, "GET", "/api/v1/changes?since=yesterday")
        self.assertEqual(status, 400)
        self.assertIn("since", json.loads(body)["error"])
        hist = get_json(self.port, "/api/v1/changes/histogram?since=1h&buckets=30")
        self.assertEqual(len(hist["counts"]), 30)
        self.assertEqual(sum(hist["counts"]), len(delivered))
        # kubetrail history --server says what --state says (the daemon
        # writes the history file; its API reads it).
        by_server = self.cli("history", "--server", "http://127.0.0.1:%d" % self.port, "-o", "json")
        by_state = self.cli("history", "--state", self.state, "-o", "json")
        self.assertEqual(by_server.returncode, 0, by_server.stderr)
        self.assertEqual(by_server.stdout, by_state.stdout)
        self.assertEqual(len(by_server.stdout.splitlines()), len(delivered))
        summary = self.cli("history", "--server", "http://127.0.0.1:%d/" % self.port, "--summary", "--kind",
                           "deployments")
        self.assertEqual(summary.returncode, 0, summary.stderr)
        self.assertEqual(len(summary.stdout.splitlines()), 1)
        self.assertIn('image: "nginx:1.0" → "nginx:1.1" [kubectl-set]', summary.stdout)
        yaml_out = self.cli("history", "--state", self.state, "--name", "web", "--type", "Modified", "-o", "yaml")
        self.assertIn("manager: kubectl-set", yaml_out.stdout)
        self.assertTrue(yaml_out.stdout.startswith("---\nschemaVersion: kubetrail.dev/v1\n"), yaml_out.stdout[:80])
        # The page is served, from the binary.
        status, page = request(self.port, "GET", "/ui")
        self.assertEqual(status, 200)
        self.assertIn("/api/v1/changes/stream", page)

    def test_stream_resumes_after_a_disconnect_with_nothing_missed_or_repeated(self):
        k = self.server.kubectl
        self.start()
        sse = SseReader(self.port)
        time.sleep(0.3)
        for i in range(3):
            k("create", "configmap", "live-%d" % i, "--from-literal=a=1")
        first = sse.events(3)
        sse.close()  # the client goes away...
        self.assertEqual([e["data"]["name"] for e in first], ["live-0", "live-1", "live-2"])
        self.assertEqual([e["id"] for e in first], [e["data"]["id"] for e in first])
        for i in range(3, 7):  # ...changes go on meanwhile...
            k("create", "configmap", "live-%d" % i, "--from-literal=a=1")
        k("create", "deployment", "web", "--image=nginx:1.0")
        wait_for(lambda: len(self.kt.changes()) >= 8, what="8 delivered")
        # ...and it comes back with the last id it saw.
        sse = SseReader(self.port, last_event_id=first[-1]["id"])
        rest = sse.events(5)
        self.assertEqual([e["data"]["name"] for e in rest], ["live-3", "live-4", "live-5", "live-6", "web"])
        k("create", "configmap", "after", "--from-literal=a=1")
        self.assertEqual(sse.events(1)[0]["data"]["name"], "after")
        sse.close()
        # Filters apply to the stream too; lastEventId= for clients that
        # cannot set the header; the CLI follows the same way.
        sse = SseReader(self.port, "?resource=deployments&lastEventId=" + urllib.parse.quote(first[0]["id"]))
        self.assertEqual([e["data"]["name"] for e in sse.events(1)], ["web"])
        sse.close()
        follow = subprocess.Popen([test_run.KUBETRAIL, "history", "--server", "http://127.0.0.1:%d" % self.port,
                                   "--since", "1m", "--name", "followed", "-o", "json", "--follow"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.0)
            k("create", "configmap", "followed", "--from-literal=a=1")
            line = follow.stdout.readline()
            self.assertEqual(json.loads(line)["name"], "followed")
        finally:
            follow.terminate()
            follow.communicate(timeout=10)

    def test_off_loopback_the_api_needs_the_token_and_probes_stay_open(self):
        token = "s3cret-token-for-test"
        self.start('[server]\nlisten = "0.0.0.0:%d"\ntoken_env = "KT_TEST_API_TOKEN"\n' % self.port,
                   env={"KT_TEST_API_TOKEN": token})
        self.server.kubectl("create", "configmap", "guarded", "--from-literal=a=1")
        wait_for(lambda: self.kt.changes(), what="a delivery")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer " + token + "x"},
                        {"Authorization": token}):
            status, body = request(self.port, "GET", "/api/v1/changes", headers)
            self.assertEqual(status, 401, headers)
            self.assertNotIn(token, body)
        self.assertEqual(request(self.port, "GET", "/api/v1/changes/stream")[0], 401)
        items = get_json(self.port, "/api/v1/changes", {"Authorization": "Bearer " + token})["items"]
        self.assertEqual([c["name"] for c in items], ["guarded"])
        for probe in ("/metrics", "/healthz", "/readyz"):
            self.assertEqual(request(self.port, "GET", probe)[0], 200, probe)
        self.assertNotIn(token, self.kt.log())
        denied = self.cli("history", "--server", "http://127.0.0.1:%d" % self.port)
        self.assertEqual(denied.returncode, 2)
        self.assertIn("401", denied.stderr)
        allowed = self.cli("history", "--server", "http://127.0.0.1:%d" % self.port, env={"KUBETRAIL_TOKEN": token})
        self.assertEqual(allowed.returncode, 0, allowed.stderr)
        self.assertIn("guarded", allowed.stdout)

    def test_off_loopback_without_a_token_or_with_api_false_the_api_is_off(self):
        self.start('[server]\nlisten = "0.0.0.0:%d"\n' % self.port)
        self.assertEqual(request(self.port, "GET", "/api/v1/changes")[0], 404)
        self.assertEqual(request(self.port, "GET", "/ui")[0], 404)
        self.assertEqual(request(self.port, "GET", "/metrics")[0], 200)
        self.assertIn("not a loopback address and no [server] token_env or token_file", self.kt.log())
        self.kt.stop()
        self.start('[server]\nlisten = "127.0.0.1:%d"\napi = false\n' % self.port)
        self.assertEqual(request(self.port, "GET", "/api/v1/changes")[0], 404)
        self.assertEqual(request(self.port, "GET", "/healthz")[0], 200)

    def test_dead_letters_are_listed_redelivered_and_dropped_over_the_api(self):
        k = self.server.kubectl
        flag = os.path.join(self.server.dir, "receiver-up")
        out = os.path.join(self.server.dir, "received.jsonl")
        handlers = ('[[handlers]]\nname = "picky"\nplugin = "exec"\n'
                    'config = { command = ["/bin/sh", "-c", "test -f %s || exit 1; cat >> %s; echo >> %s"] }\n'
                    'retry = { attempts = 1 }\n[[routes]]\nchain = ["picky"]\n' % (flag, out, out))
        self.start(handlers=handlers)
        k("create", "configmap", "bounced", "--from-literal=a=1")
        k("create", "configmap", "abandoned", "--from-literal=a=1")
        server = "http://127.0.0.1:%d" % self.port
        def dead():
            r = self.cli("dead-letters", "list", "--server", server, "-o", "json")
            return json.loads(r.stdout)["items"] if r.returncode == 0 else []
        letters = wait_for(lambda: len(dead()) == 2 and dead(), what="two dead letters")
        self.assertEqual({d["handler"] for d in letters}, {"picky"})
        by_name = {}
        for d in letters:
            shown = self.cli("dead-letters", "show", d["id"], "--server", server, "-o", "json")
            self.assertEqual(shown.returncode, 0, shown.stderr)
            by_name[json.loads(shown.stdout)["items"][0]["changeSet"]["name"]] = d["id"]
        self.assertEqual(set(by_name), {"bounced", "abandoned"})
        text = self.cli("dead-letters", "list", "--server", server)
        self.assertIn(by_name["bounced"], text.stdout)
        # A write from another origin's page is refused.
        status, _ = request(self.port, "POST", "/api/v1/dead-letters/drop?id=" + urllib.parse.quote(by_name["bounced"]),
                            {"Origin": "http://evil.example"})
        self.assertEqual(status, 403)
        with open(flag, "w"):
            pass  # the receiver is back
        r = self.cli("dead-letters", "redeliver", by_name["bounced"], "--server", server)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("redelivered to handler picky", r.stdout)
        r = self.cli("dead-letters", "drop", by_name["abandoned"], "--server", server)
        self.assertEqual(r.returncode, 0, r.stderr)
        def received():
            if not os.path.exists(out):
                return []
            with open(out) as f:
                return [json.loads(line) for line in f if line.strip()]
        wait_for(lambda: received(), what="the redelivered change set")
        time.sleep(1.0)  # and nothing more
        self.assertEqual([c["id"] for c in received()], [by_name["bounced"]])
        self.assertEqual(dead(), [])
        r = self.cli("dead-letters", "redeliver", by_name["abandoned"], "--server", server)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no dead letter", r.stderr)
        # After a restart: the redelivered one is not delivered again, the
        # dropped one not at all (the outbox remembers both).
        self.kt.stop()
        self.start(handlers=handlers)
        time.sleep(1.5)
        self.assertEqual([c["id"] for c in received()], [by_name["bounced"]])
        self.kt.stop()
        # Over the state store, with no kubetrail running.
        r = self.cli("dead-letters", "list", "--state", self.state)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no dead letters", r.stdout)
        self.kt = None

    def test_history_server_survives_a_server_that_is_not_kubetrail(self):
        # Hostile or broken answers (a proxy's error page, events that are
        # not change sets) are errors naming the request, or warnings on
        # stderr while following - never a crash, never log lines in the
        # output. Failed before: the warnings went to stdout (spdlog's
        # default logger), and an event that did not parse was thrown
        # through libcurl's C callback.
        import http.server, signal, threading

        class Broken(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if "/stream" in self.path:
                    body = b"id: x\ndata: {not json\n\nid: y\ndata: {\"type\": 5}\n\n"
                elif "proxy" in self.server.mode:
                    body = b"<html>502 Bad Gateway</html>"
                else:
                    body = b'{"items": []}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Broken)
        srv.mode = "proxy"
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        url = "http://127.0.0.1:%d" % srv.server_port
        try:
            r = self.cli("history", "--server", url, "-o", "json")
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertEqual(r.stdout, "")
            self.assertIn("not the change API's answer", r.stderr)
            srv.mode = "empty"
            follow = subprocess.Popen([test_run.KUBETRAIL, "history", "--server", url, "-o", "json", "-f"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(3)
            follow.send_signal(signal.SIGINT)
            out, err = follow.communicate(timeout=15)
            self.assertEqual(follow.returncode, 0, err)
            self.assertEqual(out, "")
            self.assertIn("not a kubetrail.dev/v1 change set", err)
        finally:
            srv.shutdown()
            srv.server_close()


if __name__ == "__main__":
    test_run.KUBETRAIL = sys.argv.pop(1)
    unittest.main(verbosity=2)
