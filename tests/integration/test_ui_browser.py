#!/usr/bin/env python3
"""The timeline page (/ui, issue 17) in a real browser: headless Chromium,
driven through chromedriver's WebDriver protocol (plain HTTP, stdlib only),
loads the page from `kubetrail run` against the test API server while the
real kubectl makes changes. What it must show comes from what kubectl did:

  - a change made after the page loaded appears without a reload;
  - filtering by namespace hides the other namespaces' change sets;
  - clicking a change set shows its field diff with the right old and new
    values, and the URL then carries the filter and the open change set;
  - that URL opened afresh shows the same view.

A screenshot goes to the output folder (argv[2]) for a person to look at.

usage: test_ui_browser.py KUBETRAIL_BINARY OUTPUT_DIR
"""
import base64, json, os, shutil, subprocess, sys, time, unittest, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_run  # noqa: E402
from test_run import ApiServer, Kubetrail, free_port, wait_for  # noqa: E402

OUTPUT = None
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


class WebDriver:
    """The few WebDriver commands the test needs (W3C protocol)."""

    def __init__(self):
        self.port = free_port()
        self.log = open(os.path.join(OUTPUT, "chromedriver.log"), "w")
        self.proc = subprocess.Popen([CHROMEDRIVER, "--port=%d" % self.port], stdout=self.log, stderr=self.log)
        wait_for(lambda: self._ready(), 20, "chromedriver")
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,900", "--no-first-run", "--disable-extensions"]}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _ready(self):
        try:
            return self._call("GET", "/status")["ready"]
        except OSError:
            return False

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["value"]

    def cmd(self, method, path, body=None):
        return self._call(method, "/session/%s%s" % (self.session, path), body)

    def get(self, url):
        self.cmd("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self, path):
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.cmd("GET", "/screenshot")))

    def quit(self):
        try:
            self._call("DELETE", "/session/" + self.session)
        except OSError:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


ROWS = "return [...document.querySelectorAll('#list li.change')].map(li => [li.dataset.namespace, li.textContent]);"


class TimelinePage(unittest.TestCase):
    def setUp(self):
        self.server = ApiServer("--bookmark-seconds", "0.5")
        self.port = free_port()
        state = os.path.join(self.server.dir, "state.db")
        self.kt = None
        self.browser = None
        k = self.server.kubectl
        for ns in ("alpha", "beta"):
            k("create", "namespace", ns)
        self.kt = Kubetrail(self.server, ["configmaps"],
                            extra='[state]\npath = "%s"\n[server]\nlisten = "127.0.0.1:%d"\n' % (state, self.port))
        self.kt.wait_ready()
        self.browser = WebDriver()

    def tearDown(self):
        if self.browser:
            self.browser.quit()
        if self.kt:
            self.kt.stop()
        self.server.stop()

    def rows(self):
        return self.browser.js(ROWS)

    def test_live_changes_filter_and_field_diff(self):
        k, b = self.server.kubectl, self.browser
        k("-n", "alpha", "create", "configmap", "settings", "--from-literal=mode=fast")
        k("-n", "beta", "create", "configmap", "other", "--from-literal=x=1")
        wait_for(lambda: len(self.kt.changes()) >= 2, what="two deliveries")
        base = "http://127.0.0.1:%d/ui" % self.port
        b.get(base + "?since=1h")
        wait_for(lambda: len(self.rows()) == 2, what="the two change sets listed")
        wait_for(lambda: "live" in b.js("return document.getElementById('status').textContent"), what="the stream")
        # Live: a change made now appears without a reload.
        b.js("window.__sameDocument = true;")
        k("-n", "alpha", "patch", "configmap", "settings", "-p", '{"data":{"mode":"safe"}}')
        wait_for(lambda: len(self.rows()) == 3, what="the patch to appear live")
        self.assertTrue(b.js("return window.__sameDocument === true"), "the page was reloaded")
        self.assertIn("Modified", self.rows()[0][1])
        marks = b.js("return document.querySelectorAll('#lanes circle').length")
        self.assertEqual(marks, 3)
        # Filter by namespace: beta's change set is hidden.
        b.js("document.getElementById('filter').value = 'namespace=alpha';"
             "document.getElementById('apply').click();")
        wait_for(lambda: [ns for ns, _ in self.rows()] == ["alpha", "alpha"], what="only alpha's change sets")
        # Click the Modified one: its field diff, old and new.
        b.js("document.querySelector('#list li.change').click();")
        diff = wait_for(lambda: b.js(
            "return [...document.querySelectorAll('#detail tr.diff-row')].map(tr => "
            "[...tr.children].map(td => td.textContent));"), what="the field diff")
        self.assertEqual(diff, [["data.mode", "fast", "safe"]])
        detail = b.js("return document.getElementById('detail').textContent")
        self.assertIn("kubectl-patch", detail)
        self.assertIn("alpha", detail)
        # The URL carries the view; opened afresh it shows the same.
        url = b.js("return location.href")
        self.assertIn("namespace=alpha", url)
        self.assertIn("open=", url)
        b.screenshot(os.path.join(OUTPUT, "timeline.png"))
        b.get("about:blank")
        b.get(url)
        wait_for(lambda: [ns for ns, _ in self.rows()] == ["alpha", "alpha"], what="the deep link's rows")
        self.assertEqual(wait_for(lambda: b.js("return document.querySelectorAll('#detail tr.diff-row').length")), 1)
        # Nothing in the page came from elsewhere than kubetrail.
        origins = b.js("return [...new Set(performance.getEntriesByType('resource').map(e => new URL(e.name).origin))]")
        self.assertEqual(origins, ["http://127.0.0.1:%d" % self.port])


if __name__ == "__main__":
    test_run.KUBETRAIL = sys.argv.pop(1)
    OUTPUT = os.path.abspath(sys.argv.pop(1))
    os.makedirs(OUTPUT, exist_ok=True)
    unittest.main(verbosity=2)
