// An OpenAPI v3 document (any aggregated API server can serve one) into
// list-key learning, and the same bytes as a CustomResourceDefinition.
// Bounded work for any document: the walk has a step budget.
#include "diff/diff.hpp"
#include "diff/list_keys.hpp"
#include "fuzz.hpp"

using namespace kubetrail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  if (p.parse(reinterpret_cast<const char*>(data), size).get(doc) != simdjson::SUCCESS) return 0;
  diff::ListKeys keys;
  keys.learn_openapi(doc, "example.com", "v1", "Widget");
  keys.learn_openapi(doc, "apps", "v1", "Deployment");
  diff::ChangeDetector detector("fuzz", {});
  detector.learn_crd(doc);
  return 0;
}
