"""Starts tests/apiserver/apiserver.py for a test and stops it after."""
import json, os, shutil, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


class ApiServer:
    def __init__(self, *extra):
        self.dir = tempfile.mkdtemp(prefix="kubetrail-apiserver-")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "apiserver.py"), "--dir", self.dir,
                                      "--lifetime", "300"] + list(extra),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError("apiserver did not start: %s %s" % (line, self.proc.stderr.read()))
        self.port = int(line.split()[1])

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


    def requests(self):
        """The requests the server has seen, oldest first."""
        import http.client, ssl
        ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "ca.crt"))
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=10)
        c.request("GET", "/testing/requests", headers={"Authorization": "Bearer test-token"})
        body = c.getresponse().read().decode()
        c.close()
        return [json.loads(line) for line in body.splitlines() if line]

    def control(self, what, **query):
        """POST /testing/<what> (cut-watches, expire-history, delay-watches...)."""
        import http.client, ssl, urllib.parse
        ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "ca.crt"))
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=10)
        path = "/testing/" + what + ("?" + urllib.parse.urlencode(query) if query else "")
        c.request("POST", path, headers={"Authorization": "Bearer test-token"})
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == 200, (what, r.status)

    def kubectl(self, *args, kubeconfig="kubeconfig-token", check=True, timeout=30):
        env = dict(os.environ, KUBECONFIG=os.path.join(self.dir, kubeconfig))
        r = subprocess.run([KUBECTL] + list(args), env=env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError("kubectl %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
        return r


class Http2Front:
    """nghttpx (Debian's nghttp2-proxy) in front of an ApiServer: HTTP/2 over
    TLS with the server's own certificate, proxying to it over HTTP/1.1+TLS
    - the shape of a real kube-apiserver, which speaks HTTP/2, for what the
    Python server cannot. Writes kubeconfig-h2 beside the server's
    kubeconfigs (token auth: the proxy ends the client's TLS)."""

    def __init__(self, server):
        import socket, time
        nghttpx = shutil.which("nghttpx")
        if not nghttpx:
            raise AssertionError("nghttpx not found: install Debian's nghttp2-proxy (packaging/install-deps.sh does)")
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.log = os.path.join(server.dir, "nghttpx.log")
        self.proc = subprocess.Popen(
            [nghttpx, "--conf=/dev/null", "--frontend=127.0.0.1,%d" % self.port,
             "--backend=127.0.0.1,%d;;tls" % server.port, "--insecure", "--workers=1", "--no-ocsp",
             "--backend-read-timeout=1h", "--frontend-read-timeout=1h", "--stream-read-timeout=1h",
             "--errorlog-file=" + self.log, "--accesslog-file=" + self.log,
             os.path.join(server.dir, "server.key"), os.path.join(server.dir, "server.crt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise AssertionError("nghttpx did not start")
                time.sleep(0.05)
        with open(os.path.join(server.dir, "kubeconfig-token")) as f:
            text = f.read()
        with open(os.path.join(server.dir, "kubeconfig-h2"), "w") as f:
            f.write(text.replace("127.0.0.1:%d" % server.port, "127.0.0.1:%d" % self.port))

    def established_connections(self):
        """Client connections to the front that are open now (/proc/net/tcp:
        remote port, state 01 = ESTABLISHED), as the kernel sees them."""
        n = 0
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[2].split(":")[1], 16) == self.port:
                    n += 1
        return n

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
