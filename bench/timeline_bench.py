#!/usr/bin/env python3
"""timeline_bench: the change API and the timeline page (/ui) with 100,000
change sets in the window (issue 17: "it must stay fast with 100,000 change
sets in the window; measure").

The history is filled the way `run` fills it, through kubetrail itself:
`kubetrail replay --state` of a recorded watch stream of N ConfigMap
updates (a thousand objects, each changed N/1000 times), so every row is a
real change set. Then `kubetrail run` (against the test API server) serves
that history, and this prints:
  - the API: wall milliseconds (median of 5) for the newest page of 500,
    the same with a filter that only a few rows pass, the 120-bucket
    overview of the whole window, and the last page reached by cursor;
  - the page, in headless Chromium: milliseconds from navigation until the
    overview, the lanes and the list of the newest 500 are drawn, and the
    browser's JS heap then.
No peer serves this view (kubectl keeps no history): the figures are
absolute, with the per-row cost of listing everything beside them for
scale (the whole window through the API, page after page).

usage: timeline_bench.py [--changes N] [--kubetrail PATH]
"""
import argparse, http.client, json, os, statistics, subprocess, sys, tempfile, time, urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import test_run  # noqa: E402
from test_run import ApiServer, Kubetrail, free_port, wait_for  # noqa: E402


def recording(path, changes, objects=1000):
    """A kubectl --watch --output-watch-events recording: `objects`
    ConfigMaps added, then updated round-robin until `changes` updates."""
    with open(path, "w") as f:
        rv = 1000
        def event(kind, i, value):
            nonlocal rv
            rv += 1
            obj = {"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cm-%04d" % i, "namespace": "ns-%02d" % (i % 20),
                                "uid": "00000000-0000-0000-0000-%012d" % i, "resourceVersion": str(rv),
                                "managedFields": [{"manager": "deployer-%d" % (i % 7), "operation": "Update",
                                                   "apiVersion": "v1", "time": "2026-12-04T10:00:00Z",
                                                   "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}]},
                   "data": {"value": str(value), "owner": "team-%d" % (i % 5)}}
            f.write(json.dumps({"type": kind, "object": obj}) + "\n")
        for i in range(objects):
            event("ADDED", i, 0)
        for n in range(changes):
            event("MODIFIED", n % objects, n // objects + 1)


def timed_get(port, path, runs=5):
    times, body = [], b""
    for _ in range(runs):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        t0 = time.perf_counter()
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        times.append((time.perf_counter() - t0) * 1000)
        c.close()
        assert r.status == 200, (path, r.status, body[:200])
    return statistics.median(times), json.loads(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=100000)
    ap.add_argument("--kubetrail", default=os.path.join(HERE, "..", "build", "kubetrail"))
    args = ap.parse_args()
    test_run.KUBETRAIL = os.path.abspath(args.kubetrail)
    work = tempfile.mkdtemp(prefix="kubetrail-timeline-bench-")
    rec, state = os.path.join(work, "configmaps.json"), os.path.join(work, "state.db")
    recording(rec, args.changes)
    cfg = os.path.join(work, "replay.toml")
    with open(cfg, "w") as f:
        f.write('[[handlers]]\nname = "none"\nplugin = "log"\nconfig = { format = "json", path = "/dev/null" }\n'
                '[[routes]]\nchain = ["none"]\n')
    t0 = time.perf_counter()
    subprocess.run([test_run.KUBETRAIL, "replay", "--config", cfg, "--state", state, rec], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print("timeline_bench: %d change sets kept by replay --state in %.1f s" % (args.changes, time.perf_counter() - t0))
    server = ApiServer()
    port = free_port()
    kt = Kubetrail(server, ["configmaps"], extra='[state]\npath = "%s"\n[server]\nlisten = "127.0.0.1:%d"\n'
                   % (state, port))
    try:
        kt.wait_ready()
        ms, page = timed_get(port, "/api/v1/changes?since=1h&limit=500")
        total = None
        print("  API, newest page of 500                      %8.1f ms" % ms)
        ms, _ = timed_get(port, "/api/v1/changes?since=1h&limit=500&namespace=ns-03&actor=deployer-3")
        print("  API, page of 500 filtered (ns and actor)     %8.1f ms" % ms)
        ms, hist = timed_get(port, "/api/v1/changes/histogram?since=1h&buckets=120")
        total = sum(hist["counts"])
        print("  API, 120-bucket overview of the window       %8.1f ms  (%d change sets counted)" % (ms, total))
        # Every page by cursor: what listing the whole window costs.
        t0, cursor, rows = time.perf_counter(), None, 0
        while True:
            q = "/api/v1/changes?since=1h&limit=1000" + ("&cursor=" + urllib.parse.quote(cursor) if cursor else "")
            _, body = timed_get(port, q, runs=1)
            rows += len(body["items"])
            cursor = body.get("nextCursor")
            if not cursor:
                break
        whole = (time.perf_counter() - t0) * 1000
        print("  API, the whole window by cursor (pages of 1000) %5.0f ms  (%d rows, %.1f us a row)"
              % (whole, rows, whole * 1000 / max(rows, 1)))
        # The bench's own verdict: every change set kept, counted and listed once.
        expected = args.changes + 1000  # the updates, and the thousand objects added
        if total != expected or rows != expected:
            sys.exit("MISMATCH: %d change sets replayed, %d counted, %d listed" % (expected, total, rows))
        sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
        import test_ui_browser
        test_ui_browser.OUTPUT = work
        b = test_ui_browser.WebDriver()
        try:
            samples = []
            for _ in range(3):
                b.get("about:blank")
                b.get("http://127.0.0.1:%d/ui?since=1h" % port)
                drawn = wait_for(lambda: b.js("return document.documentElement.dataset.loadedMs"), 60, "the page drawn")
                assert b.js("return document.querySelectorAll('#list li.change').length") == 500
                assert b.js("return document.querySelectorAll('#lanes circle').length") > 0
                samples.append(float(drawn))
            heap = b.js("return performance.memory ? performance.memory.usedJSHeapSize : 0")
            print("  page, navigation until drawn (500 rows, lanes, overview) %6.0f ms (median of 3)  JS heap %.1f MB"
                  % (statistics.median(samples), heap / 1e6))
        finally:
            b.quit()
    finally:
        kt.stop()
        server.stop()


if __name__ == "__main__":
    main()
