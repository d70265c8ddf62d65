// What the informer's cache keeps of each object (model/object_store.hpp):
// its pruned text, identity and managers.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "model/inline_string.hpp"

namespace kubetrail::model {

// One metadata.managedFields entry, without its field set: who wrote the
// object and when, for actor attribution.
struct ManagerEntry {
  std::string manager;
  std::string operation;    // "Update" or "Apply"
  std::string time;         // RFC 3339
  std::string subresource;  // "" or e.g. "status", "scale"
  bool operator==(const ManagerEntry&) const = default;
};

struct StoredObject {
  // The fields an event reads (uid to resourceVersion, the text's frame and
  // the managers' code) come last, next to the key that the cache's table
  // (model/object_table.hpp) keeps right after the object in the same
  // allocation: the lookup has just read those bytes, so these are in
  // the CPU cache or one line from it. The vectors, empty once a store
  // packs, come first.

  // The pruned, redacted, minified object. Inside an ObjectStore that packs,
  // it is a zstd frame in the store's FrameArena instead (packed = true,
  // `frame`; json is then empty): read it through ObjectStore::text().
  std::string json;
  // Inside an ObjectStore that packs, the managers are encoded in the
  // store's arena instead (`managers_code`; the vector is then empty): read
  // and write them through ObjectStore::managers() and set_managers().
  std::vector<ManagerEntry> managers;
  std::string resource_version;
  bool packed = false;
  uint32_t text_size = 0;   // of the text, packed or not
  uint32_t frame_size = 0;  // packed: of the frame
  uint32_t managers_code_size = 0;
  // Up to two top-level members of the text, as (offset, size), whose bytes
  // were copied from the source in the form a parse may leave out of the
  // DOM unchecked when the next version carries them unchanged
  // (ChangeDetector::parse_event; size 0: none). Set by the detector, with
  // the text; an object stored any other way has none.
  struct Verbatim {
    uint32_t offset = 0, size = 0;
  };
  std::array<Verbatim, 2> verbatim{};
  // Packed: the frame, owned by the store that holds this object - which
  // never hands its objects out by value, so no copy outlives the frame.
  char* frame = nullptr;
  char* managers_code = nullptr;  // the same for the managers, encoded
  InlineString uid;               // in place, last: see inline_string.hpp
};

}  // namespace kubetrail::model
