"""Test-only control endpoints under /testing/ (see apiserver.py's usage)."""
import json

from .errors import ApiError

class TestControls:
    """Mixed into the HTTP handler."""

    def testing(self, method, what, q):
        store = self.server.store
        if what == "requests" and method == "GET":
            with store.lock:
                lines = "".join(json.dumps(r) + "\n" for r in self.server.requests).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(lines))); self.end_headers()
            return self.wfile.write(lines)
        if method != "POST":
            raise ApiError(405, "MethodNotAllowed", "POST only")
        with store.lock:
            if what == "cut-watches":
                store.watch_epoch += 1
                store.lock.notify_all()
            elif what == "expire-history":
                # As an etcd compaction at the current revision: a watch from
                # any older resourceVersion gets 410, but a list made now
                # returns a resourceVersion that can be watched (a real
                # server never marks its own fresh list as too old).
                store.history.clear()
                store.oldest = store.rv
                self.server.force_gone = True
            elif what == "delay":
                self.server.delay_ms = int(q.get("ms", "0"))
            elif what == "delay-watches":
                self.server.watch_delay_ms = int(q.get("ms", "0"))
            elif what == "delay-lists":
                self.server.list_delay_ms = int(q.get("ms", "0"))
            else:
                raise ApiError(404, "NotFound", "no such test control")
        self.send_json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})
