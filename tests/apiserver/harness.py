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
