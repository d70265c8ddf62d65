"""fakekube: a Kubernetes API server for kubetrail's tests, in modules.

Run it with ../apiserver.py (its usage says what it serves and which test
controls it has); start it from a test with ../harness.py. What it must be
is indistinguishable from kube-apiserver for what kubetrail and kubectl use:
../test_kubectl_fidelity.py drives it with the real kubectl and holds every
rule learned from the real server.

Modules, from the bottom up:
  errors      ApiError: a Status object with a code and a reason
  catalogue   the resources served, and how objects are shaped (kind and
              apiVersion first; none in list items of built-in types)
  store       objects, the resourceVersion counter, the event history
  selectors   label and field selectors
  patch       merge, strategic-merge and JSON patches
  protobuf    decoding of the protobuf bodies kubectl sends for some types
  discovery   aggregated and legacy discovery, OpenAPI v3 (a handler mixin)
  resources   get / list / create / replace / patch / scale / delete (mixin)
  watch       watches: event streams, bookmarks, timeouts, 410 (mixin)
  controls    the /testing/ endpoints (mixin)
  authorization  SelfSubjectAccessReview: RBAC for `kubectl auth can-i` (mixin)
  server      the HTTP server and the handler the mixins make up
  pki         certificates and kubeconfigs for a run
"""
