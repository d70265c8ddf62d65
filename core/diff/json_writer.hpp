// Minified JSON output of simdjson DOM values, straight into a caller's
// buffer (no temporary strings on the hot path).
#pragma once

#include <simdjson.h>

#include <string>
#include <string_view>

namespace kubetrail::diff {

void append_json_string(std::string_view s, std::string& out);
void append_json(simdjson::dom::element e, std::string& out);
inline std::string to_json(simdjson::dom::element e) {
  std::string out;
  append_json(e, out);
  return out;
}

}  // namespace kubetrail::diff
