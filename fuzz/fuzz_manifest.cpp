// A manifest file (`kubetrail diff`): YAML, multi-document YAML, JSON or a
// List - a kubetrail::Error naming the file, or objects that prune.
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "diff/diff.hpp"
#include "fuzz.hpp"
#include "kube/manifest.hpp"

using namespace kubetrail;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string path = fuzz::as_file(fuzz::bytes(data, size), ".yaml");
  std::vector<nlohmann::json> objects;
  try {
    objects = kube::load_manifests(path);
  } catch (const Error&) {
    return 0;
  }
  diff::ChangeDetector detector("fuzz", {});
  simdjson::dom::parser p;
  for (const auto& o : objects) {
    simdjson::dom::element e;
    // Invalid UTF-8 in a YAML scalar: replaced, as kubetrail diff does.
    std::string text = o.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (p.parse(simdjson::padded_string(text)).get(e) != simdjson::SUCCESS) continue;
    (void)detector.prune(model::resource_type_for("v1", "ConfigMap"), e);
  }
  return 0;
}
