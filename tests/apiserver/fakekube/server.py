"""HTTP: the server, authentication, routing to the parts mixed into the handler."""
import gzip
import http.server
import ssl
import time
import urllib.parse
import uuid

from . import protobuf
from .authorization import AuthorizationMixin
from .catalogue import AGGREGATED_TYPE
from .controls import TestControls
from .discovery import Discovery
from .errors import ApiError
from .gojson import go_json
from .jsonbody import decode_json
from .resources import Resources
from .store import resource_for
from .watch import Watches

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

class Handler(Discovery, Resources, Watches, TestControls, AuthorizationMixin, http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubetrail-test-apiserver"
    # Go's net package sets TCP_NODELAY on every connection, so
    # kube-apiserver does too. Without it a response's headers and body (two
    # writes) waited for the client's delayed ACK: 40 ms per request.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):  # quiet: tests read /testing/requests instead
        pass

    # -- plumbing --------------------------------------------------------
    # kube-apiserver (APIResponseCompression, on by default) gzips a response
    # over 128 KiB at level 1 when the client accepts gzip - as client-go
    # and kubectl always do. Watch streams are not compressed.
    GZIP_THRESHOLD = 128 * 1024

    def send_json(self, code, obj, content_type="application/json"):
        body = go_json(obj)
        gzipped = len(body) > self.GZIP_THRESHOLD and "gzip" in (self.headers.get("Accept-Encoding") or "")
        if gzipped:
            body = gzip.compress(body, compresslevel=1)
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(body)

    def fail(self, err):
        self.send_json(err.code, err.status())

    def body_json(self):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf":
            # kubectl's typed clients (kubectl create deployment, ...) send
            # protobuf, as the real server accepts for built-in types.
            try:
                return protobuf.decode(self.raw_body)
            except (protobuf.ProtoError, KeyError, UnicodeDecodeError) as e:
                raise ApiError(415, "UnsupportedMediaType", "cannot decode protobuf body: %s" % e)
        raw = self.raw_body
        if not raw:
            raise ApiError(400, "BadRequest", "request body required")
        return decode_json(raw, "invalid JSON in request body")

    def authenticate(self):
        cfg = self.server.cfg
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            if auth[7:] in cfg.tokens:
                return "token"
            raise ApiError(401, "Unauthorized", "Unauthorized")
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        if cert:
            return "cert"
        raise ApiError(401, "Unauthorized", "Unauthorized")

    def dispatch(self, method):
        n = int(self.headers.get("Content-Length") or 0)
        self.raw_body = self.rfile.read(n) if n else b""  # always consumed: keep-alive stays in sync
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        store = self.server.store
        with store.lock:
            store_requests = self.server.requests
            store_requests.append({"method": method, "path": url.path, "query": q,
                                   "userAgent": self.headers.get("User-Agent", ""),
                                   "accept": self.headers.get("Accept", ""),
                                   "acceptEncoding": self.headers.get("Accept-Encoding", ""),
                                   "contentType": self.headers.get("Content-Type", "")})
        try:
            self.authenticate()
            if self.server.delay_ms:
                time.sleep(self.server.delay_ms / 1000.0)
            self.route(method, url.path, q)
        except ApiError as e:
            self.fail(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        except Exception as e:  # a bug here must be visible, as a real 500
            self.fail(ApiError(500, "InternalError", "test apiserver: %r" % e))

    def do_GET(self): self.dispatch("GET")
    def do_POST(self): self.dispatch("POST")
    def do_PUT(self): self.dispatch("PUT")
    def do_PATCH(self): self.dispatch("PATCH")
    def do_DELETE(self): self.dispatch("DELETE")

    # -- routing ---------------------------------------------------------
    def route(self, method, path, q):
        store = self.server.store
        parts = [p for p in path.split("/") if p]
        if path.startswith("/testing/"):
            return self.testing(method, parts[1], q)
        if path == "/version":
            return self.send_json(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-kubetrail-test",
                                        "platform": "linux/amd64"})
        if path in ("/healthz", "/readyz", "/livez"):
            self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
            return self.wfile.write(b"ok")
        if path == "/openapi/v3":
            return self.send_json(200, {"paths": {
                gv_path: {"serverRelativeURL": "/openapi/v3/%s?hash=%s" % (gv_path, self.server.store.rv)}
                for gv_path in self.group_version_paths()}})
        if path.startswith("/openapi/v3/"):
            return self.send_json(200, self.openapi_v3(path[len("/openapi/v3/"):]))
        if path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" and method == "POST":
            return self.subject_access_review()
        if path in ("/api", "/apis") and self.wants_aggregated():
            return self.send_json(200, self.aggregated(core=path == "/api"), content_type=AGGREGATED_TYPE)
        if path == "/api":
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:%d" % self.server.server_address[1]}]})
        if path == "/apis":
            return self.send_json(200, self.group_list())
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts and parts[0] == "apis" and len(parts) >= 2:
            if len(parts) == 2:
                g = next((x for x in self.group_list()["groups"] if x["name"] == parts[1]), None)
                if not g: raise ApiError(404, "NotFound", "the server could not find the requested resource")
                return self.send_json(200, dict(g, kind="APIGroup", apiVersion="v1"))
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return self.send_json(200, self.resource_list(group, version))
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        res = resource_for(store, group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if res.namespaced is False:
            ns = None
        if method == "GET" and name is None:
            return self.watch(res, ns, q) if q.get("watch") in ("1", "true") else self.list(res, ns, q)
        if method == "POST" and name is None:
            return self.create(res, ns, q)
        if name is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if sub == "scale" and res.scale:
            return self.scale(method, res, ns, name, q)
        if sub not in (None, "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET": return self.send_json(200, self.get(res, ns, name))
        if method == "PUT": return self.replace(res, ns, name, q, sub)
        if method == "PATCH": return self.patch(res, ns, name, q, sub)
        if method == "DELETE": return self.delete(res, ns, name)
        raise ApiError(405, "MethodNotAllowed", "method not allowed")
