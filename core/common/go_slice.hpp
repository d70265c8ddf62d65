// The lists of what Kubernetes serves are Go slices that encoding/json
// wrote: an array, or null for a nil slice. One rule for reading them, so
// that a list page and a discovery document are told from a page that is
// neither in the same way.
#pragma once

#include <simdjson.h>

#include <optional>
#include <string_view>

namespace kubetrail {

// The slice `field` of the object `doc`: `out` is its array, or left empty
// for null (a nil slice: none). false when `doc` is no object, or the
// field is missing or not an array: the text is not the document asked
// for (a proxy's or a gateway's page answering 200), and read as empty it
// would say that the server has nothing there.
inline bool slice_field(simdjson::dom::element doc, std::string_view field, std::optional<simdjson::dom::array>& out) {
  out.reset();
  if (doc.type() != simdjson::dom::element_type::OBJECT) return false;
  const auto value = doc[field];
  if (value.is_null()) return true;
  return value.get_array().get(out.emplace()) == simdjson::SUCCESS;
}

}  // namespace kubetrail
