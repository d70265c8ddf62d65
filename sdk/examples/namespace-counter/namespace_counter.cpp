// namespace_counter: counts change sets per namespace and type, and writes
// the table when kubetrail shuts down (or reloads). A small, complete example
// of a kubetrail plugin built from the installed SDK.
//
// Config: { "path": "FILE" }  - where to write the table; without it the
// table goes to kubetrail's log.
#include <kubetrail/sdk.hpp>

#include <fstream>
#include <map>
#include <string>

namespace {

namespace sdk = kubetrail::sdk;

class NamespaceCounter : public sdk::Plugin {
 public:
  NamespaceCounter(std::string_view config_json, sdk::Host host) : sdk::Plugin(host) {
    // The host validated the config against kSchema below, so a crude look
    // for "path" is enough here; a real plugin would use a JSON library.
    auto key = config_json.find("\"path\"");
    if (key != std::string_view::npos) {
      auto open = config_json.find('"', config_json.find(':', key) + 1);
      auto close = config_json.find('"', open + 1);
      path_ = std::string(config_json.substr(open + 1, close - open - 1));
    }
  }

  sdk::Result handle(const sdk::Batch& batch) override {
    for (const auto& cs : batch) {
      std::string ns = cs.object_namespace().empty() ? "(cluster)" : std::string(cs.object_namespace());
      ++counts_[ns][std::string(cs.type_name())];
    }
    return sdk::Result::ok();
  }

  sdk::Result flush(uint32_t /*reason*/) override {
    std::string table;
    for (const auto& [ns, by_type] : counts_)
      for (const auto& [type, n] : by_type) table += ns + " " + type + " " + std::to_string(n) + "\n";
    if (path_.empty()) {
      host().log(sdk::LogLevel::info, table);
      return sdk::Result::ok();
    }
    std::ofstream out(path_, std::ios::trunc);
    if (!out) return sdk::Result::fail("cannot write " + path_);
    out << table;
    return sdk::Result::ok();
  }

 private:
  std::string path_;
  std::map<std::string, std::map<std::string, int>> counts_;
};

constexpr const char* kSchema = R"schema({
  "type": "object",
  "additionalProperties": false,
  "properties": {"path": {"type": "string", "minLength": 1, "description": "file for the table (default: the log)"}}
})schema";

}  // namespace

KUBETRAIL_PLUGIN(NamespaceCounter, "namespace_counter", "1.0.0", "counts change sets per namespace", kSchema)
