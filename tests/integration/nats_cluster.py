"""A real NATS JetStream cluster for tests (Debian's nats-server), and a
small client of the NATS protocol that reads a stream back through the
JetStream API - the consumer side of the `nats` handler's tests, written
from the protocol (docs.nats.io, "Client Protocol" and "JetStream API"), not
with the library the plugin uses, so that the two cannot agree on a mistake.

Loopback only; every wait is bounded; nodes are killed on the way out."""
import base64, json, os, shutil, signal, socket, subprocess, tempfile, time, urllib.request

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


class Cluster:
    """`size` nats-server nodes with JetStream, routed to each other."""

    def __init__(self, size=3):
        self.dir = tempfile.mkdtemp(prefix="kubetrail-nats-")
        self.names = ["n%d" % i for i in range(size)]
        self.client_ports = [free_port() for _ in self.names]
        self.route_ports = [free_port() for _ in self.names]
        self.http_ports = [free_port() for _ in self.names]
        self.procs = {}
        for i, name in enumerate(self.names):
            routes = ", ".join("nats-route://127.0.0.1:%d" % p for j, p in enumerate(self.route_ports) if j != i)
            with open(self.config(name), "w") as f:
                f.write('server_name: %s\nlisten: "127.0.0.1:%d"\nhttp: "127.0.0.1:%d"\n'
                        'jetstream { store_dir: "%s", max_memory_store: 64MB, max_file_store: 1GB }\n'
                        'cluster { name: "kt", listen: "127.0.0.1:%d", routes: [%s] }\n'
                        % (name, self.client_ports[i], self.http_ports[i], os.path.join(self.dir, name),
                           self.route_ports[i], routes))
        for name in self.names:
            self.start(name)
        for name in self.names:
            self.wait_healthy(name)

    def config(self, name):
        return os.path.join(self.dir, name + ".conf")

    def url(self, name):
        return "nats://127.0.0.1:%d" % self.client_ports[self.names.index(name)]

    def urls(self):
        return [self.url(n) for n in self.names]

    def start(self, name):
        log = open(os.path.join(self.dir, name + ".log"), "a")
        self.procs[name] = subprocess.Popen([NATS_SERVER, "-c", self.config(name)], stdout=log, stderr=log)
        log.close()

    def kill(self, name):
        p = self.procs.pop(name)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)

    def healthy(self, name):
        port = self.http_ports[self.names.index(name)]
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=2) as r:
                return r.status == 200 and json.loads(r.read()).get("status") == "ok"
        except (OSError, ValueError):
            return False

    def wait_healthy(self, name, timeout=60):
        wait_for(lambda: self.healthy(name), timeout, "nats node %s healthy with JetStream" % name)

    def stop(self):
        for name in list(self.procs):
            self.kill(name)
        shutil.rmtree(self.dir, ignore_errors=True)


class Client:
    """Request/reply over the NATS text protocol: enough to call the
    JetStream API ($JS.API.*) and read messages with their headers."""

    def __init__(self, url, timeout=10):
        host, port = url.rsplit("//", 1)[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = b""
        self.next_id = 0
        self._line()  # INFO {...}
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,'
                          b'"protocol":1,"name":"kubetrail-test"}\r\nPING\r\n')
        while self._line() != b"PONG":
            pass
        self.sock.sendall(b"SUB _INBOX.kt.> 1\r\n")

    def close(self):
        self.sock.close()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise OSError("nats connection closed")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _bytes(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def request(self, subject, payload=b""):
        """(headers, payload) of the reply; headers holds the status line as "status"."""
        self.next_id += 1
        inbox = "_INBOX.kt.%d" % self.next_id
        self.sock.sendall(b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), inbox.encode(), len(payload), payload))
        while True:
            line = self._line()
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
                continue
            parts = line.split()
            if not parts or parts[0] not in (b"MSG", b"HMSG"):
                if parts and parts[0] == b"-ERR":
                    raise AssertionError("nats: %s" % line.decode())
                continue
            if parts[0] == b"MSG":
                body = self._bytes(int(parts[-1]))
                head = {}
            else:
                raw = self._bytes(int(parts[-1]))
                hlen = int(parts[-2])
                head, body = parse_headers(raw[:hlen]), raw[hlen:]
            if parts[1].decode() == inbox:
                return head, body

    def api(self, what, body=None):
        _, reply = self.request("$JS.API." + what, json.dumps(body).encode() if body is not None else b"")
        return json.loads(reply)


def parse_headers(raw):
    lines = raw.decode().split("\r\n")
    head = {"status": lines[0][len("NATS/1.0"):].strip()}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            head[k.strip()] = v.strip()
    return head


def read_stream(url, stream):
    """Every message of the stream, in stream order: dicts of seq, subject,
    headers and the JSON body."""
    c = Client(url)
    try:
        info = c.api("STREAM.INFO." + stream)
        assert "error" not in info, info
        out = []
        for seq in range(info["state"]["first_seq"], info["state"]["last_seq"] + 1):
            r = c.api("STREAM.MSG.GET." + stream, {"seq": seq})
            if "error" in r:  # a deleted message leaves a gap; there should be none here
                raise AssertionError("stream %s seq %d: %s" % (stream, seq, r["error"]))
            m = r["message"]
            out.append({"seq": m["seq"], "subject": m["subject"],
                        "headers": parse_headers(base64.b64decode(m["hdrs"])) if m.get("hdrs") else {},
                        "body": json.loads(base64.b64decode(m["data"]))})
        return out
    finally:
        c.close()


def stream_info(url, stream):
    c = Client(url)
    try:
        return c.api("STREAM.INFO." + stream)
    finally:
        c.close()
