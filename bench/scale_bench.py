#!/usr/bin/env python3
"""scale_bench: kubetrail run, as a whole process, against 100,000 pods
(issue 15, item 1), with kubectl consuming the same bytes as the peer.

The API server is the test API server's handler (tests/apiserver/fakekube:
discovery, OpenAPI, authentication, TLS) with pods served from bytes built
once at start - list pages of 500 and a stream of MODIFIED events, each a
label change on a distinct pod - so that it is never what is measured.
nghttpx in front gives HTTP/2 over TLS, as kube-apiserver speaks. Pods are
shaped like the issue's (Pending, two containers with env and probes,
volumes, labels, annotations, managedFields: ~8.5 KB of compact JSON each;
list items carry no kind/apiVersion, as kube-apiserver sends them).

What it prints, for kubetrail with the `log` plugin writing JSON lines to
its stdout (a pipe the driver reads), without and with a state store, and
for kubectl:
  - initial sync: CPU seconds and wall seconds until `synced`;
  - resident memory after the sync (VmRSS) and its peak (VmHWM);
  - CPU per update event, whole process (diff, routing, the log plugin),
    and what that makes per core: events per CPU-second;
  - p50/p99 event-to-handler latency at a paced rate (default 1,000/s):
    from the server's write of the event to the line on kubetrail's stdout,
    beside the same for curl holding the watch (the rig's floor: one
    process, one hop) and for kubectl (`--watch-only -o name`).
The rig's floor is also measured for the sync and per event: curl
fetching every list page over one connection, and curl's CPU for the same
burst of events - TLS, HTTP/2 and the kernel's copies, no parsing. The
sync's and each event's CPU are split by kubetrail's threads (I/O, watch,
routing, delivery): the I/O thread is read against curl's floor, the rest
is kubetrail's own work.
kubectl: `kubectl get pods -o json --chunk-size=500` for the list (CPU,
peak RSS), `kubectl get pods --watch-only -o json` for the stream.
Each row says how many times better kubetrail does than kubectl, and what
state on costs against state off. kubectl's list holds everything before
it prints: past --kubectl-max-rss (default 8 GiB) it is stopped, and its
figures are then those up to that point (so kubetrail's lead is larger).

CPU is the sum of every thread's run time (/proc/PID/task/*/schedstat, in
ns). One run at a time on an otherwise idle machine: this VM's speed drifts.

usage: scale_bench.py [--pods N] [--events M] [--rate R] [--latency-events L]
                      [--kubetrail PATH] [--no-kubectl] [--no-state]
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "apiserver"))
from fakekube.errors import ApiError  # noqa: E402
from fakekube.pki import make_pki, write_kubeconfigs  # noqa: E402
from fakekube.server import Handler, Server  # noqa: E402
from fakekube.store import Store  # noqa: E402
from harness import Http2Front  # noqa: E402

NAMESPACE = "bench"
PAGE = 500


# --- the pods --------------------------------------------------------------

def pod_template():
    """A Pending pod as kube-apiserver holds one, with @NAME@, @UID@, @RV@ and
    @REV@ to fill in (formatting a template is what keeps 100k pods cheap)."""
    env = [{"name": "SETTING_%02d" % i, "value": "value-of-setting-%02d-for-the-shop-backend" % i} for i in range(24)]
    probe = {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "initialDelaySeconds": 5,
             "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    def container(name, image, port):
        return {"name": name, "image": image, "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                "env": env, "resources": {"limits": {"cpu": "500m", "memory": "512Mi"},
                                          "requests": {"cpu": "100m", "memory": "128Mi"}},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/shop"},
                                 {"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                                  "readOnly": True}],
                "livenessProbe": probe, "readinessProbe": dict(probe, initialDelaySeconds=2),
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"}
    fields_spec = {"f:containers": {'k:{"name":"web"}': {".": {}, "f:env": {}, "f:image": {}, "f:name": {},
                                                           "f:ports": {}, "f:resources": {}}},
                   "f:volumes": {}, "f:restartPolicy": {}, "f:schedulerName": {}}
    pod = {
        "metadata": {
            "name": "@NAME@", "generateName": "shop-web-7d9c8b6f5-", "namespace": NAMESPACE, "uid": "@UID@",
            "resourceVersion": "@RV@", "creationTimestamp": "2026-11-30T10:00:00Z",
            "labels": {"app": "shop-web", "pod-template-hash": "7d9c8b6f5", "tier": "frontend",
                       "team": "checkout", "bench-rev": "@REV@"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-30T09:58:00Z",
                            "prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                            "shop.example.com/owner": "checkout-team@example.com"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "shop-web-7d9c8b6f5",
                                 "uid": "6c1f1a4e-0000-4000-8000-000000000001", "controller": True,
                                 "blockOwnerDeletion": True}],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                 "time": "2026-11-30T10:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}},
                                             "f:ownerReferences": {}}, "f:spec": fields_spec}},
                {"manager": "kube-scheduler", "operation": "Update", "apiVersion": "v1",
                 "time": "2026-11-30T10:00:01Z", "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:conditions": {".": {}, 'k:{"type":"PodScheduled"}': {
                     ".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:message": {},
                     "f:reason": {}, "f:status": {}, "f:type": {}}}}}},
                {"manager": "kubectl-label", "operation": "Update", "apiVersion": "v1",
                 "time": "2026-11-30T10:05:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:labels": {"f:bench-rev": {}}}}},
            ],
        },
        "spec": {
            "containers": [container("web", "registry.example.com/shop/web:1.27.3", 8080),
                           container("sidecar", "registry.example.com/shop/envoy:1.31.2", 9090)],
            "volumes": [{"name": "config", "configMap": {"name": "shop-web-config", "defaultMode": 420}},
                        {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt",
                                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "shop-web", "serviceAccount": "shop-web", "securityContext": {},
            "schedulerName": "default-scheduler", "priority": 0, "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300},
                            {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 300}],
        },
        "status": {"phase": "Pending", "qosClass": "Burstable", "conditions": [
            {"type": "PodScheduled", "status": "False", "lastProbeTime": None,
             "lastTransitionTime": "2026-11-30T10:00:01Z", "reason": "Unschedulable",
             "message": "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
                        "3 No preemption victims found for incoming pod."}]},
    }
    return json.dumps(pod, separators=(",", ":"))


def pod_name(i):
    return "shop-web-7d9c8b6f5-%06d" % i


def fill(template, i, rv, rev):
    return (template.replace("@NAME@", pod_name(i)).replace("@UID@", "0b5e%04x-0000-4000-8000-%012x" % (i >> 16, i))
            .replace("@RV@", str(rv)).replace("@REV@", str(rev)))


class Pods:
    """List pages and watch events, as bytes, built once."""

    def __init__(self, n, m):
        t = pod_template()
        self.list_rv = 10 + n
        items = [fill(t, i, 10 + i, 0) for i in range(n)]
        self.pod_bytes = len(items[0]) if items else 0
        self.pages = []
        for at in range(0, n, PAGE):
            end = min(n, at + PAGE)
            meta = {"resourceVersion": str(self.list_rv)}
            if end < n:
                meta["continue"] = "p%d" % end
                meta["remainingItemCount"] = n - end
            head = '{"kind":"PodList","apiVersion":"v1","metadata":%s,"items":[' % json.dumps(meta, separators=(",", ":"))
            self.pages.append((head + ",".join(items[at:end]) + "]}").encode())
        if not self.pages:
            self.pages.append(('{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"%d"},"items":[]}'
                               % self.list_rv).encode())
        # Watch objects carry kind and apiVersion (list items do not).
        self.events = []
        for e in range(m):
            obj = fill(t, e % n, self.list_rv + 1 + e, 1 + e // n)
            obj = '{"kind":"Pod","apiVersion":"v1",' + obj[1:]
            self.events.append(('{"type":"MODIFIED","object":%s}\n' % obj).encode())


# --- the server ------------------------------------------------------------

class BenchHandler(Handler):
    """The test server's handler, with pods in NAMESPACE served from bytes."""

    def route(self, method, path, q):
        if path in ("/api/v1/pods", "/api/v1/namespaces/%s/pods" % NAMESPACE) and method == "GET":
            return self.bench_watch(q) if q.get("watch") in ("1", "true") else self.bench_list(q)
        if path == "/testing/bench-stream" and method == "POST":
            return self.bench_trigger(q)
        if path == "/testing/bench-state" and method == "GET":
            b = self.server.bench
            with b.lock:
                body = json.dumps({"watchers": b.watchers, "connects": b.connects, "sent": b.sent}).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            return self.wfile.write(body)
        return super().route(method, path, q)

    def bench_list(self, q):
        pods = self.server.bench.pods
        # The pages are built for limit=500 (kubetrail's and the kubectl
        # peer's chunk size): another limit is refused, not served wrong.
        if q.get("limit", str(PAGE)) != str(PAGE):
            raise ApiError(400, "BadRequest", "the bench server serves pages of %d only" % PAGE)
        token = q.get("continue", "")
        page = int(token[1:]) // PAGE if token.startswith("p") else 0
        body = pods.pages[min(page, len(pods.pages) - 1)]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def bench_trigger(self, q):
        b = self.server.bench
        with b.lock:
            b.rate = float(q.get("rate", "0"))
            b.start = int(q.get("start", "0"))
            b.count = int(q.get("count", str(len(b.pods.events))))
            b.to = int(q.get("to", "0"))  # one watch by its connection number (--interleave); 0: every watch
            b.generation += 1
            b.sent = []
            b.lock.notify_all()
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()

    def bench_watch(self, q):
        try:
            self._bench_watch(q)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        except Exception as e:  # mid-stream: a 500 would only garble it
            import traceback
            print("scale_bench server: watch failed: %r\n%s" % (e, traceback.format_exc()), file=sys.stderr, flush=True)

    def _bench_watch(self, q):
        b = self.server.bench
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        deadline = time.time() + float(q.get("timeoutSeconds", "1800"))
        with b.lock:
            b.connects += 1
            me = b.connects
            seen = b.generation
        # Each trigger streams to every watch open at the time; the times
        # recorded are those of the newest watch (a client killed earlier
        # may still hold one until a write finds it gone).
        while time.time() < deadline and not b.stopping:
            with b.lock:
                b.watchers += 1
                while b.generation == seen and time.time() < deadline:
                    b.lock.wait(0.5)
                b.watchers -= 1
                seen = b.generation
                rate, start, count, to = b.rate, b.start, b.count, b.to
            if time.time() >= deadline:
                break
            if to and to != me:
                continue
            # One chunk per event, flushed, as kube-apiserver writes them.
            began = time.time()
            for i, data in enumerate(b.pods.events[start:start + count]):
                if rate > 0:
                    due = began + i / rate
                    while time.time() < due:
                        time.sleep(max(0.0, min(due - time.time(), 0.001)))
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                with b.lock:
                    if (b.connects == me or to == me) and b.generation == seen:
                        b.sent.append(time.time())
        self.wfile.write(b"0\r\n\r\n")


class BenchState:
    def __init__(self, pods):
        self.pods = pods
        self.lock = threading.Condition()
        self.watchers, self.connects, self.generation, self.rate, self.start, self.count = 0, 0, 0, 0.0, 0, 0
        self.to = 0
        self.sent, self.stopping = [], False


def serve(args):
    t0 = time.time()
    pods = Pods(args.pods, args.events)
    os.makedirs(args.dir, exist_ok=True)
    make_pki(args.dir)

    class Config:
        tokens = {"test-token"}
        bookmark_seconds = 60.0
        aggregated_discovery = True

    srv = Server(("127.0.0.1", 0), BenchHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(args.dir, "server.crt"), os.path.join(args.dir, "server.key"))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.cfg, srv.store, srv.requests = Config(), Store(1000), []
    srv.delay_ms, srv.watch_delay_ms, srv.list_delay_ms, srv.force_gone = 0, 0, 0, False
    srv.bench = BenchState(pods)
    write_kubeconfigs(args.dir, srv.server_address[1], "test-token")
    threading.Timer(args.lifetime, lambda: os._exit(0)).start()
    print("READY %d %d %d %.1f" % (srv.server_address[1], pods.pod_bytes, sum(map(len, pods.pages)), time.time() - t0),
          flush=True)
    srv.serve_forever()


# --- the driver ------------------------------------------------------------

def cpu_ns(pid):
    """Run time of every thread of `pid` so far, in ns."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def system_ns(pid):
    """Time `pid` has spent in the kernel so far (its threads' system time,
    /proc/PID/stat), in ns: clock ticks, so ~10 ms coarse - enough over
    thousands of events."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[12]) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")  # stime, field 15 of stat


def io_counts(pid):
    """/proc/PID/io: syscr, syscw (read and write calls) and rchar, wchar
    (bytes through them) of the whole process so far."""
    with open("/proc/%d/io" % pid) as f:
        return {k: int(v) for k, v in (line.split(":") for line in f)}


# Threads of `kubetrail run` by name (common/thread_name.hpp), for the
# per-event split: the stage each does.
STAGES = (("kt-io", "I/O (TLS, HTTP/2)"), ("kt-w:", "watch (parse, prune, diff, cache)"),
          ("main", "routing (main thread)"), ("kt-d:", "delivery (log plugin)"),
          ("kt-history", "history (state on)"), ("", "other threads"))


def cpu_by_stage(pid, field=0):
    """Run time so far of each of STAGES' thread groups, in ns. The main
    thread is the one whose id is the process's. With field=2, how many
    times each group was put on a CPU instead (schedstat's third field):
    per event, that counts the wake-ups each hand-off costs - a thread
    woken for every event pays a futex wait and a context switch each
    time, one woken for a batch pays them once."""
    def schedstat(f):
        return int(f.read().split()[field])
    return by_stage(pid, "schedstat", schedstat)


def faults_by_stage(pid):
    """Minor page faults so far of each of STAGES' thread groups (each
    thread's /proc/PID/task/TID/stat, its 10th field): a page a stage
    touched for the first time - memory it allocated afresh instead of
    reusing, each fault microseconds in a VM."""
    return by_stage(pid, "stat", lambda f: int(f.read().rsplit(")", 1)[1].split()[7]))


def stage_of(pid, tid, comm=None):
    """The STAGES label of thread `tid` of `pid`: the main thread is the one
    whose id is the process's, the others go by their name (read from
    /proc unless given)."""
    if int(tid) == pid:
        comm = "main"
    elif comm is None:
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            comm = f.read().strip()
    return next(label for prefix, label in STAGES if comm.startswith(prefix))


def by_stage(pid, name, read):
    """`read` of each thread's /proc/PID/task/TID/NAME, summed by STAGES."""
    total = dict.fromkeys((label for _, label in STAGES), 0)
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/%s" % (pid, tid, name)) as f:
                ns = read(f)
            stage = stage_of(pid, tid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        total[stage] += ns
    return total


def settle(pid, quiet_ns=1_000_000, window=0.2, timeout=10.0):
    """Waits until `pid` is idle: less than `quiet_ns` of CPU in `window` s
    (idle kubetrail spends ~1.3 ms a second). The last change set on the
    log plugin's stdout is not the end of an event's work: the history
    writer keeps what routing handed it on its own thread, after delivery,
    and its CPU belongs to the events that made it."""
    deadline = time.time() + timeout
    last = cpu_ns(pid)
    while time.time() < deadline:
        time.sleep(window)
        now = cpu_ns(pid)
        if now - last < quiet_ns:
            return
        last = now


def minor_faults(pid):
    """Minor page faults of the whole process so far (/proc/PID/stat's
    10th field): each is a page the kernel handed out on first touch, and
    in a VM each costs microseconds."""
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def memory_kib(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def wait_for(predicate, timeout, what, progress=None, stall=120):
    """Waits up to `timeout` s; with `progress` (a count), gives up sooner
    when it has not moved for `stall` s (a kubetrail that delivers nothing -
    a handler that could not be made, say - fails in minutes, not ten)."""
    deadline = time.time() + timeout
    last, moved = (progress(), time.time()) if progress else (None, None)
    while not predicate():
        now = time.time()
        if now > deadline:
            raise SystemExit("scale_bench: timed out waiting for " + what)
        if progress:
            current = progress()
            if current != last:
                last, moved = current, now
            elif now - moved > stall:
                raise SystemExit("scale_bench: nothing arrived for %d s waiting for %s" % (stall, what))
        time.sleep(0.005)


class Rig:
    """The server with nghttpx in front, and how to talk to it."""

    def __init__(self, pods, events):
        self.dir = tempfile.mkdtemp(prefix="kubetrail-scale-bench-")
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", "--dir", self.dir,
                                      "--pods", str(pods), "--events", str(events)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "READY":
            raise SystemExit("scale_bench: the server did not start")
        self.backend = int(line[1])
        self.pod_bytes, self.list_bytes, self.build_s = int(line[2]), int(line[3]), float(line[4])
        # nghttpx in front, as the tests run it (tests/apiserver/harness.py).
        self.front = Http2Front(types.SimpleNamespace(dir=self.dir, port=self.backend))
        self.kubeconfig = os.path.join(self.dir, "kubeconfig-h2")

    def call(self, method, what, **query):
        ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "ca.crt"))
        c = http.client.HTTPSConnection("127.0.0.1", self.backend, context=ctx, timeout=30)
        c.request(method, "/testing/%s?%s" % (what, urllib.parse.urlencode(query)),
                  headers={"Authorization": "Bearer test-token"})
        r = c.getresponse()
        body = r.read()
        c.close()
        return json.loads(body) if body else None

    def connects(self):
        return self.call("GET", "bench-state")["connects"]

    def stream(self, count, rate=0.0, start=0, after=None, to=0):
        """Streams events[start:start+count] to every open watch (or only
        to watch connection number `to`), once a watch newer than
        connection number `after` waits for it."""
        def ready():
            st = self.call("GET", "bench-state")
            return st["watchers"] >= 1 and (after is None or st["connects"] > after)
        wait_for(ready, 120, "a watch")
        time.sleep(0.2)  # the newest watch back in its wait after a stream
        self.call("POST", "bench-stream", count=count, rate=rate, start=start, to=to)

    def stop(self):
        self.front.stop()
        self.proc.kill()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def note(text):
    print("  ... " + text, file=sys.stderr, flush=True)


class Arrivals:
    """Lines of a child's stdout as they come: a thread blocked in read(2)
    on the pipe, so that a line is seen when it is written - not at the next
    poll of a file (a reader polling every 0.5 ms put ~3 ms into the p50 on
    this VM: vCPUs that go idle between polls wake slowly). For each line,
    `key` returns the object's name (bytes) or None; the first arrival per
    name is kept."""

    def __init__(self, pipe, key):
        self.pipe, self.key = pipe, key
        self.lines, self.first = 0, {}
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        buf = b""
        while True:
            chunk = os.read(self.pipe.fileno(), 1 << 20)
            if not chunk:
                return
            now = time.time()
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                name = self.key(line)
                if name is not None:
                    self.first.setdefault(name, now)
            self.lines += len(lines)


def first_name(line):
    """The first "name" of a JSON line: the object's, in a change set (its
    top-level keys come before old/new) and in a watch event (metadata
    comes before spec)."""
    i = line.find(b'"name":"')
    if i < 0:
        return None
    j = line.find(b'"', i + 8)
    return line[i + 8:j].decode() if j > 0 else None


def kubectl_name(line):  # `-o name` prints "pod/NAME"
    return line[4:].decode() if line.startswith(b"pod/") else None


def paced_latency(rig, args, arrivals, after):
    """--latency-events events at --rate after the burst (pods the burst did
    not touch), to every watch newer than `after`; p50/p99 from the server's
    write of each event to its arrival in `arrivals`, in ms."""
    rig.stream(args.latency_events, args.rate, start=args.events, after=after)
    names = [pod_name((args.events + i) % args.pods) for i in range(args.latency_events)]
    deadline = time.time() + 60
    while time.time() < deadline and any(n not in arrivals.first for n in names[-10:]):
        time.sleep(0.05)
    sent = rig.call("GET", "bench-state")["sent"]
    lat = sorted((arrivals.first[n] - t) * 1e3 for n, t in zip(names, sent) if n in arrivals.first)
    res = {"lat_seen": len(lat), "lat_sent": len(sent)}
    if lat:
        res["lat_p50_ms"] = lat[len(lat) // 2]
        res["lat_p99_ms"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return res


def run_floor(rig, args):
    """The rig's own cost: curl, one process and one hop, doing the
    transport part of kubetrail's work over the same HTTP/2 front - every
    list page over one connection, as an informer asks for them (CPU and
    wall), then the same watch: the burst's CPU per event, and the paced
    events' latency. No watcher can do better on this rig (TLS, HTTP/2 and
    the kernel's copies are in both); kubetrail's figures are read against
    it. curl writes what it gets to a pipe or /dev/null and parses nothing."""
    with open(rig.kubeconfig) as f:
        server = next(line.split()[-1] for line in f if line.strip().startswith("server:"))
    curl = ["curl", "-s", "--http2", "--cacert", os.path.join(rig.dir, "ca.crt"),
            "-H", "Authorization: Bearer test-token"]
    base = server + "/api/v1/namespaces/%s/pods?limit=%d" % (NAMESPACE, PAGE)
    urls = [base] + ["%s&continue=p%d" % (base, at) for at in range(PAGE, args.pods, PAGE)]
    note("rig floor (curl): the list, %d pages" % len(urls))
    res = {}
    t0 = time.time()
    p = subprocess.Popen(curl + urls, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        raise SystemExit("scale_bench: curl's list failed (status %d)" % status)
    res["sync_wall"] = time.time() - t0
    res["sync_cpu"] = usage.ru_utime + usage.ru_stime
    connects = rig.connects()
    p = subprocess.Popen(curl + ["-N", server + "/api/v1/namespaces/%s/pods?watch=1&resourceVersion=1" % NAMESPACE],
                         stdout=subprocess.PIPE)
    try:
        arrivals = Arrivals(p.stdout, first_name)
        note("rig floor (curl): %d events as fast as they come" % args.events)
        wait_for(lambda: rig.connects() > connects, 120, "curl's watch")
        before = cpu_ns(p.pid)
        rig.stream(args.events, after=connects)
        wait_for(lambda: arrivals.lines >= args.events, 600, "curl's %d events" % args.events)
        res["event_cpu_us"] = (cpu_ns(p.pid) - before) / 1e3 / args.events
        note("rig floor (curl): %d events at %g/s" % (args.latency_events, args.rate))
        res.update(paced_latency(rig, args, arrivals, connects))
        return res
    finally:
        p.kill()
        p.wait()


def start_perf(args, pid, state, phase):
    """perf record of the whole process for one phase, "sync" or "events"
    (--perf): call graphs by DWARF unwinding, since the build keeps no frame
    pointers. `perf report -i FILE --no-children` reads it;
    docs/PERFORMANCE.md has the breakdowns made from such files."""
    if not args.perf:
        return None
    os.makedirs(args.perf, exist_ok=True)
    path = os.path.join(args.perf, "%s-state-%s.data" % (phase, "on" if state else "off"))
    # The sync is recorded machine-wide from before kubetrail starts (its
    # threads start with it); `perf report --comm` keeps kubetrail's.
    target = ["-a"] if pid is None else ["-p", str(pid)]
    p = subprocess.Popen(["perf", "record", "-q", "-F", "1999", "--call-graph", "dwarf,16384"] + target +
                         ["-o", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches before the stream starts (the sync: before the list's first page)
    return p


def start_counting(args, pid):
    """perf stat of every thread during the burst (--syscalls): system
    calls, each ~1 us on this paravirtualized VM (a null one measured
    0.9-1.1 us). A count, unlike a time, does not move with the VM's speed,
    so two builds can be told apart by it in one run each. (Instructions
    would be the other such count; this VM has no hardware counters.)"""
    if not args.syscalls:
        return None
    if not shutil.which("perf"):
        note("--syscalls: perf not found (Debian: linux-perf), not counted")
        return None
    fd, path = tempfile.mkstemp(prefix="kubetrail-scale-stat-")
    os.close(fd)  # perf stat -o writes it over
    p = subprocess.Popen(["perf", "stat", "--per-thread", "-x", ",", "-e",
                          "raw_syscalls:sys_enter", "-p", str(pid), "-o", path],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached before the burst starts
    return p, path


def stop_counting(counting, pid, events):
    """System calls per event, by STAGES' thread group."""
    if counting is None:
        return None
    p, path = counting
    stop(p, signal.SIGINT, 60)
    if os.path.getsize(path) == 0:  # perf could not attach (perf_event_paranoid, not root)
        note("--syscalls: perf stat wrote nothing (exit %s), not counted" % p.returncode)
        os.unlink(path)
        return None
    calls = dict.fromkeys((label for _, label in STAGES), 0.0)
    with open(path) as f:
        for line in f:
            # perf stat -x, --per-thread: "COMM-TID,COUNT,UNIT,EVENT,...";
            # COMM is the thread's name as /proc/PID/task/TID/comm has it.
            cells = line.strip().split(",")
            if len(cells) < 4 or cells[3] != "raw_syscalls:sys_enter" or not cells[1].isdigit():
                continue
            comm, tid = cells[0].rsplit("-", 1)
            calls[stage_of(pid, tid, comm)] += int(cells[1]) / events
    os.unlink(path)
    return calls


def stop(proc, sig, timeout):
    """Sends `sig`, waits up to `timeout` s, then kills."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_perf(perf):
    if perf is not None:
        stop(perf, signal.SIGINT, 120)


def start_kubetrail(rig, args, state):
    """`kubetrail run` watching the bench's pods with the log plugin on its
    stdout, with a state store or without: (process, its stdout's
    Arrivals, its log's path, a wait for its sync)."""
    work = tempfile.mkdtemp(prefix="kubetrail-scale-run-", dir=rig.dir)
    config = os.path.join(work, "kubetrail.toml")
    with open(config, "w") as f:
        f.write('[cluster]\nname = "bench"\n[watch]\nresources = ["pods"]\nnamespaces = ["%s"]\n' % NAMESPACE)
        f.write('[state]\npath = "%s"\n' % (os.path.join(work, "state.db") if state else ""))
        f.write('[server]\nlisten = ""\n')
        f.write('[[handlers]]\nname = "log"\nplugin = "log"\nconfig = { format = "json", path = "-" }\n')
        f.write('[[routes]]\nchain = ["log"]\n')
    err_path = os.path.join(work, "kubetrail.log")
    with open(err_path, "w") as err:
        proc = subprocess.Popen([args.kubetrail, "run", "--config", config, "--kubeconfig", rig.kubeconfig],
                                stdout=subprocess.PIPE, stderr=err)

    def synced():
        if proc.poll() is not None:
            raise SystemExit("scale_bench: kubetrail exited (%d): %s" % (proc.returncode, open(err_path).read()))
        with open(err_path) as f:
            return "synced" in f.read()
    return proc, Arrivals(proc.stdout, first_name), err_path, lambda: wait_for(synced, 600, "kubetrail's sync")


def stop_kubetrail(proc):
    stop(proc, signal.SIGTERM, 30)


def run_kubetrail(rig, args, state):
    connects = rig.connects()
    note("kubetrail, state %s: initial sync" % ("on" if state else "off"))
    perf = start_perf(args, None, state, "sync")
    t0 = time.time()
    proc, out, err_path, wait_synced = start_kubetrail(rig, args, state)
    res = {}
    try:
        wait_synced()
        res["sync_wall"] = time.time() - t0
        res["sync_cpu"] = cpu_ns(proc.pid) / 1e9
        res["sync_stage_s"] = {k: v / 1e9 for k, v in cpu_by_stage(proc.pid).items()}
        res["sync_faults"] = minor_faults(proc.pid) / 1000
        stop_perf(perf)
        time.sleep(1.0)  # what the sync left behind settles (delivery, frees)
        res.update(memory_kib(proc.pid))
        note("kubetrail: %d events as fast as they come" % args.events)
        # CPU per event: the whole stream as fast as the server writes it.
        perf = start_perf(args, proc.pid, state, "events")
        before, stages, system_before = cpu_ns(proc.pid), cpu_by_stage(proc.pid), system_ns(proc.pid)
        runs_before = cpu_by_stage(proc.pid, field=2)
        faults_before = faults_by_stage(proc.pid)
        io_before = io_counts(proc.pid)
        counting = start_counting(args, proc.pid)
        t1 = time.time()
        rig.stream(args.events, after=connects)
        def delivered():
            if proc.poll() is not None:
                raise SystemExit("scale_bench: kubetrail exited (%d)" % proc.returncode)
            return out.lines
        try:
            wait_for(lambda: delivered() >= args.events, 600, "kubetrail's %d change sets" % args.events,
                     progress=lambda: out.lines)
        except SystemExit as e:
            raise SystemExit("%s\nkubetrail's log ends:\n%s" % (e, open(err_path).read()[-4000:]))
        res["events_wall"] = time.time() - t1
        settle(proc.pid)
        res["counts"] = stop_counting(counting, proc.pid, args.events)
        res["event_cpu_us"] = (cpu_ns(proc.pid) - before) / 1e3 / args.events
        res["stage_us"] = {k: (v - stages[k]) / 1e3 / args.events for k, v in cpu_by_stage(proc.pid).items()}
        res["stage_runs"] = {k: (v - runs_before[k]) / args.events
                             for k, v in cpu_by_stage(proc.pid, field=2).items()}
        res["stage_faults"] = {k: (v - faults_before[k]) / args.events for k, v in faults_by_stage(proc.pid).items()}
        res["event_system_us"] = (system_ns(proc.pid) - system_before) / 1e3 / args.events
        io_after = io_counts(proc.pid)
        res["event_writes"] = (io_after["syscw"] - io_before["syscw"]) / args.events
        res["event_written"] = (io_after["wchar"] - io_before["wchar"]) / args.events
        stop_perf(perf)
        res["change_sets"] = out.lines
        note("kubetrail: %d events at %g/s" % (args.latency_events, args.rate))
        res.update(paced_latency(rig, args, out, connects))
    finally:
        stop_kubetrail(proc)
    return res


def run_interleaved(rig, args):
    """State on against state off per event, measured in turns: both
    processes synced and watching, then --interleave rounds in which each
    gets the same slice of the burst (pods not changed before) while the
    other idles, in ABBA order. This VM's speed drifts up to 2x within
    minutes, so two runs one after the other can differ by more than what
    the state store adds; turns a few seconds apart see the same machine,
    and the median of the rounds' ratios is the figure. Returns the rounds'
    (off, on) CPU per event, in us."""
    procs = {}
    try:
        for state in (False, True):
            note("interleaved: kubetrail, state %s: initial sync" % ("on" if state else "off"))
            before = rig.connects()
            proc, out, _, wait_synced = start_kubetrail(rig, args, state)
            procs[state] = [proc, out, 0]
            wait_synced()
            wait_for(lambda: rig.connects() > before, 120, "its watch")
            procs[state][2] = rig.connects()  # its watch: the one opened since
            time.sleep(1.0)  # what the sync left behind settles
        per_round = args.events // args.interleave
        rounds = []
        for r in range(args.interleave):
            start = r * per_round
            cost = {}
            for state in ((False, True) if r % 2 == 0 else (True, False)):
                proc, out, conn = procs[state]
                settle(proc.pid)
                expected = out.lines + per_round
                before = cpu_ns(proc.pid)
                rig.stream(per_round, start=start, to=conn)
                wait_for(lambda: out.lines >= expected or proc.poll() is not None, 600,
                         "%d change sets (state %s)" % (per_round, "on" if state else "off"))
                if proc.poll() is not None:
                    raise SystemExit("scale_bench: kubetrail exited (%d)" % proc.returncode)
                settle(proc.pid)
                cost[state] = (cpu_ns(proc.pid) - before) / 1e3 / per_round
                if out.lines != expected:
                    raise SystemExit("scale_bench: FAILED: %d change sets for %d updates (state %s)" % (
                        out.lines - expected + per_round, per_round, "on" if state else "off"))
            rounds.append((cost[False], cost[True]))
            note("round %d: off %.1f us, on %.1f us per event (%.2fx)" % (
                r + 1, cost[False], cost[True], cost[True] / cost[False]))
        return rounds
    finally:
        for proc, _, _ in procs.values():
            stop_kubetrail(proc)


def run_kubectl(rig, args):
    env = dict(os.environ, KUBECONFIG=rig.kubeconfig)
    kubectl = shutil.which("kubectl") or "/usr/bin/kubectl"
    res = {}
    note("kubectl: list")
    t0 = time.time()
    p = subprocess.Popen([kubectl, "get", "pods", "-n", NAMESPACE, "-o", "json", "--chunk-size=500"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    # kubectl holds the whole list before it prints (PERFORMANCE.md: out of
    # memory after 71k pods at 6.8 GiB): stopped past --kubectl-max-rss.
    killed = None
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        try:
            rss = memory_kib(p.pid).get("VmRSS", 0)
        except FileNotFoundError:
            rss = 0
        if rss > args.kubectl_max_rss * 1024 and killed is None:
            killed = rss
            p.kill()
        time.sleep(0.05)
    if killed is None and status != 0:
        raise SystemExit("scale_bench: kubectl get failed (status %d)" % status)
    res["sync_wall"] = time.time() - t0
    res["sync_cpu"] = usage.ru_utime + usage.ru_stime
    res["VmHWM"] = usage.ru_maxrss
    res["killed"] = killed
    out = os.path.join(rig.dir, "kubectl-watch.json")
    connects = rig.connects()
    note("kubectl: watch, %d events" % args.events)
    with open(out, "wb") as f:
        p = subprocess.Popen([kubectl, "get", "pods", "-n", NAMESPACE, "--watch-only", "-o", "json"],
                             stdout=f, stderr=subprocess.DEVNULL, env=env)
        try:
            wait_for(lambda: rig.connects() > connects, 600, "kubectl's watch")
            time.sleep(0.5)
            before = cpu_ns(p.pid)
            t1 = time.time()
            rig.stream(args.events, after=connects)

            def objects():  # -o json prints each object from a "{" line at column 0
                with open(out, "rb") as g:
                    return g.read().count(b"\n{\n") + 1
            wait_for(lambda: objects() >= args.events, 600, "kubectl's %d objects" % args.events)
            res["events_wall"] = time.time() - t1
            res["event_cpu_us"] = (cpu_ns(p.pid) - before) / 1e3 / args.events
        finally:
            p.kill()
            p.wait()
    note("kubectl: %d events at %g/s" % (args.latency_events, args.rate))
    connects = rig.connects()
    p = subprocess.Popen([kubectl, "get", "pods", "-n", NAMESPACE, "--watch-only", "-o", "name"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        res.update(paced_latency(rig, args, Arrivals(p.stdout, kubectl_name), connects))
    finally:
        p.kill()
        p.wait()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=100000)
    ap.add_argument("--events", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=1000.0, help="events per second of the latency run")
    ap.add_argument("--latency-events", type=int, default=3000)
    ap.add_argument("--kubetrail", default=os.path.join(ROOT, "build", "kubetrail"))
    ap.add_argument("--no-kubectl", action="store_true")
    ap.add_argument("--kubectl-max-rss", type=int, default=8192, help="MiB: kubectl's list is stopped past it")
    ap.add_argument("--no-state", action="store_true", help="skip the run with a state store")
    ap.add_argument("--interleave", type=int, default=0, metavar="ROUNDS",
                    help="then state on against off per event in ROUNDS turns of --events / ROUNDS each")
    ap.add_argument("--syscalls", action="store_true",
                    help="count each thread's system calls per event (perf stat) during the burst")
    ap.add_argument("--perf", metavar="DIR", help="perf record each kubetrail run's sync and event phases into DIR")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--lifetime", type=float, default=3600, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args)
    if args.events + args.latency_events > args.pods:
        raise SystemExit("scale_bench: --events plus --latency-events must not exceed --pods (one change per pod)")
    rig = Rig(args.pods, args.events + args.latency_events)
    try:
        print("scale_bench: %d pods of %d bytes (list %.0f MB in pages of %d), %d events; HTTP/2 over TLS (nghttpx)"
              % (args.pods, rig.pod_bytes, rig.list_bytes / 1e6, PAGE, args.events))
        floor = run_floor(rig, args)
        off = run_kubetrail(rig, args, False)
        on = None if args.no_state else run_kubetrail(rig, args, True)
        peer = None if args.no_kubectl else run_kubectl(rig, args)
        turns = run_interleaved(rig, args) if args.interleave > 0 else None
    finally:
        rig.stop()

    def split(what, key, unit, fmt, kt, total=True):
        """A phase's CPU by thread, and all but the I/O thread: kubetrail's
        own work, beyond moving the bytes (which the rig floor's curl
        does alone)."""
        for _, label in STAGES:
            print("  " + "  ".join(["%-40s" % ("  %s, %s, %s" % (what, label, unit))] + [
                ("%s " + fmt) % (n, r[key][label]) for n, r in (("off", off), ("on", on)) if r]))
        if total:
                print("  " + "  ".join(["%-40s" % ("  %s, all but I/O, %s" % (what, unit))] + [
                ("%s " + fmt) % (n, sum(r[key].values()) - r[key][STAGES[0][1]]) for n, r in (("off", off), ("on", on))
                if r]))

    def row(what, key, fmt, kt, ratio_to_peer=True, higher_is_better=False):
        cells = ["%-40s" % what, ("off " + fmt) % kt[0].get(key, float("nan"))]
        if kt[1] is not None:
            cells.append(("on " + fmt) % kt[1].get(key, float("nan")))
        if peer is not None and key in peer and ratio_to_peer:
            cells.append(("kubectl " + fmt) % peer[key])
            better = peer[key] / kt[0][key] if not higher_is_better else kt[0][key] / peer[key]
            cells.append("kubetrail %.1fx better%s" % (better, " (kubectl stopped past the RSS cap)"
                                                        if peer.get("killed") and key in ("sync_cpu", "sync_wall", "hwm_mib") else ""))
        if kt[1] is not None and key in kt[1] and key in kt[0] and kt[0][key]:
            cells.append("state on/off %.2fx" % (kt[1][key] / kt[0][key]))
        if key in floor:
            # The transport alone, by curl in this run: read against
            # kubetrail's I/O thread in the split below.
            cells.append(("rig floor (curl) " + fmt) % floor[key])
        print("  " + "  ".join(cells))
    kt = (off, on)
    row("initial sync, CPU s", "sync_cpu", "%8.2f", kt)
    row("initial sync, wall s", "sync_wall", "%8.2f", kt)
    split("sync", "sync_stage_s", "s", "%8.2f", kt)
    for r in (off, on):
        if r:
            r["rss_mib"], r["hwm_mib"] = r.get("VmRSS", 0) / 1024, r.get("VmHWM", 0) / 1024
    if peer:
        peer["hwm_mib"] = peer["VmHWM"] / 1024
    row("RSS after sync, MiB", "rss_mib", "%8.0f", kt, False)
    row("peak RSS, MiB", "hwm_mib", "%8.0f", kt)
    row("sync, minor page faults, thousands", "sync_faults", "%8.1f", kt, False)
    row("CPU per update event, us", "event_cpu_us", "%8.1f", kt)
    for r in (off, on, peer):
        if r:
            r["per_core"] = 1e6 / r["event_cpu_us"]
    row("events per CPU-second", "per_core", "%8.0f", kt, higher_is_better=True)
    # The kernel's share (system time): what the state store's writes cost
    # there (page cache, the file system) is mostly the VM's, on this one.
    row("  of it in the kernel (system time), us", "event_system_us", "%8.1f", kt, False)
    row("  write calls per event (stdout too)", "event_writes", "%8.2f", kt, False)
    row("  bytes written per event (stdout too)", "event_written", "%8.0f", kt, False)
    # Where an event's CPU goes, by thread (each thread is one stage), and
    # what the diff alone makes per core: the watch thread's share is the
    # parse, prune, diff and cache of the event (issue 15: >= 100k events/s
    # through the diff on one core).
    split("per event", "stage_us", "us", "%8.1f", kt)
    split("per event", "stage_runs", "times on a CPU", "%8.2f", kt, total=False)
    split("per event", "stage_faults", "minor page faults", "%8.2f", kt, total=False)
    if off.get("counts") and (not on or on.get("counts")):
        split("per event", "counts", "system calls", "%8.2f", kt)
    watch = STAGES[1][1]
    print("  " + "  ".join(["%-40s" % "events per CPU-second, watch thread"] + [
        ("%s %8.0f" % (n, 1e6 / r["stage_us"][watch])) for n, r in (("off", off), ("on", on))
        if r and r["stage_us"][watch] > 0]))
    # Latency against the rig's floor (curl, one hop) and kubectl, each
    # measured in this run on the same paced events.
    for pct in ("p50", "p99"):
        key = "lat_%s_ms" % pct
        cells = ["%-40s" % ("event-to-handler %s at %g/s, ms" % (pct, args.rate))]
        cells += ["%s %8.2f" % (n, r.get(key, float("nan"))) for n, r in (("off", off), ("on", on)) if r]
        cells += ["%s %8.2f" % (n, r.get(key, float("nan"))) for n, r in (("rig floor (curl)", floor), ("kubectl", peer)) if r]
        if peer and key in peer and key in off:
            cells.append("kubetrail %.1fx better" % (peer[key] / off[key]))
        print("  " + "  ".join(cells))
    if turns:
        ratios = sorted(on_us / off_us for off_us, on_us in turns)
        print("  CPU per update event in %d turns of %d events, us: %s" % (
            len(turns), args.events // args.interleave,
            ", ".join("off %.1f on %.1f (%.2fx)" % (a, b, b / a) for a, b in turns)))
        print("  state on/off per event, interleaved: median %.2fx (%.2f-%.2fx)" % (
            statistics.median(ratios), ratios[0], ratios[-1]))
    print("  change sets for %d updates: %s" % (args.events, ", ".join(
        "%s %d" % (n, r["change_sets"]) for n, r in (("off", off), ("on", on)) if r)))
    # One change set per update, exactly (the last row): anything
    # else is a defect, not a figure.
    wrong = [n for n, r in (("off", off), ("on", on)) if r and r["change_sets"] != args.events]
    if wrong or any(r and r.get("lat_seen") != args.latency_events for r in (off, on)):
        raise SystemExit("scale_bench: FAILED: change sets %s for %d updates; paced events seen %s of %d" % (
            ", ".join(str(r["change_sets"]) for r in (off, on) if r), args.events,
            ", ".join(str(r.get("lat_seen")) for r in (off, on) if r), args.latency_events))


if __name__ == "__main__":
    main()
