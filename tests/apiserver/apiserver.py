#!/usr/bin/env python3
"""A small Kubernetes API server for kubetrail's tests (Python 3 standard
library only; the code is the fakekube package beside this script).

It speaks enough of the real kube-apiserver's HTTP API for kubectl v1.32 and
for kubetrail's client: HTTPS with a CA and certificates generated at start
(openssl), bearer-token and client-certificate authentication, discovery
(aggregated apidiscovery.k8s.io/v2 for /api and /apis when the Accept header
asks for it, legacy otherwise or with --no-aggregated-discovery; group
versions, /version), create / get / list (limit
+ continue, label and field selectors) / replace (resourceVersion conflicts)
/ merge, strategic-merge and JSON patches / delete, the scale subresource,
watches (chunked, from a resourceVersion, bookmarks, timeoutSeconds) with a
bounded event history (an old resourceVersion gets 410 Gone), CRDs
registered at run time, Leases, Table output for kubectl's default printer,
and real Status objects for errors.

Test-only control endpoints (authenticated like the rest):
  POST /testing/cut-watches      close every open watch connection
  POST /testing/expire-history   forget the event history (a compaction at
                                 the current revision): the next watch gets
                                 410, a fresh list's resourceVersion does not
  POST /testing/delay?ms=N       delay every response by N ms (0: off)
  POST /testing/delay-watches?ms=N   delay only the start of watches (a gap
                                 in which changes happen unseen)
  POST /testing/delay-lists?ms=N delay only lists (a slow initial sync)
  GET  /testing/requests         the requests seen so far, as JSON lines

Usage: apiserver.py --dir DIR [--port 0] [--token T]... [--history N] [--no-aggregated-discovery]
Writes DIR/ca.crt, server and client certificates, DIR/kubeconfig-token,
DIR/kubeconfig-cert and DIR/port, then prints "READY <port>" and serves until
killed (or --lifetime seconds pass: tests must stop by themselves).
"""
import argparse
import os
import ssl
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakekube.pki import make_pki, write_kubeconfigs  # noqa: E402
from fakekube.server import Handler, Server  # noqa: E402
from fakekube.store import Store  # noqa: E402

class Config:
    pass

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", action="append", default=[])
    ap.add_argument("--history", type=int, default=1000)
    ap.add_argument("--bookmark-seconds", type=float, default=1.0)
    ap.add_argument("--no-aggregated-discovery", action="store_true",
                    help="answer /api and /apis with the legacy documents only, as servers before 1.26 do")
    ap.add_argument("--lifetime", type=float, default=600, help="exit after this many seconds")
    a = ap.parse_args()
    # Objects as deep as kube-apiserver stores (fakekube/jsonbody.py: 10,000
    # levels, plus a list's or a watch event's own) go through Python's
    # recursive json, deepcopy and patch code: room for them, and the C
    # stack under it in every request thread.
    sys.setrecursionlimit(100000)
    threading.stack_size(32 << 20)  # 10,100 levels of json and deepcopy need under 4 MiB
    os.makedirs(a.dir, exist_ok=True)
    make_pki(a.dir)
    cfg = Config()
    cfg.tokens = set(a.token or ["test-token"])
    cfg.bookmark_seconds = a.bookmark_seconds
    cfg.aggregated_discovery = not a.no_aggregated_discovery
    srv = Server(("127.0.0.1", a.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(a.dir, "server.crt"), os.path.join(a.dir, "server.key"))
    ctx.load_verify_locations(os.path.join(a.dir, "ca.crt"))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.cfg, srv.store, srv.requests = cfg, Store(a.history), []
    srv.delay_ms, srv.watch_delay_ms, srv.list_delay_ms, srv.force_gone = 0, 0, 0, False
    port = srv.server_address[1]
    write_kubeconfigs(a.dir, port, sorted(cfg.tokens)[0])
    threading.Timer(a.lifetime, lambda: os._exit(0)).start()
    print("READY %d" % port, flush=True)
    srv.serve_forever()

if __name__ == "__main__":
    main()
