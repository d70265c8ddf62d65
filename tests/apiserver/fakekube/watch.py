"""Watches: chunked event streams from a resourceVersion, bookmarks, timeoutSeconds, 410."""
import socket
import ssl
import time

from .errors import ApiError
from .gojson import go_json
from .selectors import field_match, labels_match, parse_label_selector

class Watches:
    """Mixed into the HTTP handler."""

    def watch(self, res, ns, q):
        store = self.server.store
        if self.server.watch_delay_ms:
            time.sleep(self.server.watch_delay_ms / 1000.0)
        reqs = parse_label_selector(q.get("labelSelector"))
        timeout = float(q.get("timeoutSeconds") or 1800)
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        deadline = time.time() + timeout
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(event):
            data = go_json(event) + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def visible(qual, obj):
            return (qual == res.qualified and (ns is None or obj["metadata"].get("namespace") == ns)
                    and labels_match(reqs, obj["metadata"].get("labels", {})) and field_match(q.get("fieldSelector"), obj))

        with store.lock:
            epoch = store.watch_epoch
            rv = q.get("resourceVersion")
            pending = []
            if not rv or rv == "0":
                # "Get state and start at most recent": ADDED for what exists.
                for (qual, _, _), obj in sorted(store.objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])):
                    if visible(qual, obj):
                        pending.append({"type": "ADDED", "object": self.full(res, obj)})
                since = store.rv
            else:
                since = int(rv)
                if since < store.oldest or self.server.force_gone:
                    self.server.force_gone = False
                    pending.append({"type": "ERROR", "object": ApiError(
                        410, "Expired", "too old resource version: %d (%d)" % (since, store.oldest)).status()})
                    since = None
        cut = False
        try:
            for e in pending:
                send(e)
            last_bookmark = time.time()
            while since is not None:
                with store.lock:
                    # scanned_rv: everything up to it has been looked at, so a
                    # bookmark may name it; not store.rv after the wait, which
                    # may cover events not yet sent.
                    scanned_rv = store.rv
                    events = [(erv, t, o) for erv, qual, t, o in store.history if erv > since and visible(qual, o)]
                    if not events:
                        store.lock.wait(timeout=0.2)
                    cut = store.watch_epoch != epoch
                for erv, t, o in events:
                    send({"type": t, "object": self.full(res, o)})
                    since = erv
                if cut or time.time() >= deadline:
                    break
                if bookmarks and time.time() - last_bookmark >= self.server.cfg.bookmark_seconds:
                    since = max(since, scanned_rv)
                    send({"type": "BOOKMARK", "object": {"kind": res.kind, "apiVersion": res.api_version,
                                                         "metadata": {"resourceVersion": str(since)}}})
                    last_bookmark = time.time()
            if not cut:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass
        self.close_connection = True
        if cut:  # an abrupt cut, as a dropped connection: no final chunk
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
