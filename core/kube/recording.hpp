// Recorded watch streams: the output of
//   kubectl get RESOURCE --watch --output-watch-events -o json
// one file per resource, read as if an informer were watching. Several files
// from one cluster are merged in resourceVersion order (resourceVersions are
// opaque in general, but within one cluster they are etcd revisions and
// order events globally; when any is not a number, file order is kept).
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "kube/watch_stream.hpp"

namespace kubetrail::kube {

struct RecordedEvent {
  model::WatchEventType type = model::WatchEventType::added;
  std::string_view frame;  // the event's JSON bytes, inside Recording's buffers (padded)
  size_t file = 0;         // index into Recording::files()
  uint64_t offset = 0;     // byte offset of the event in its file
  // A DELETED event nested deeper than kubetrail handles (and no deeper
  // than kube-apiserver writes): its frame parses only with a parser of
  // common/deep_json.hpp. Every other event that deep is left out.
  bool deep = false;
};

class Recording {
 public:
  // Reads and checks every file. A file that cannot be read throws
  // kubetrail::Error. A malformed or truncated stream does not throw: its
  // events before the fault are kept and the fault goes to errors(), naming
  // the file and byte offset, so nothing before it is lost.
  static Recording load(const std::vector<std::filesystem::path>& files);

  const std::vector<RecordedEvent>& events() const noexcept { return events_; }
  const std::vector<std::string>& errors() const noexcept { return errors_; }
  const std::vector<std::string>& files() const noexcept { return files_; }

 private:
  std::vector<simdjson::padded_string> buffers_;
  std::vector<std::string> files_;
  std::vector<RecordedEvent> events_;
  std::vector<std::string> errors_;
};

}  // namespace kubetrail::kube
