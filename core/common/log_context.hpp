// Fields a thread attaches to the log lines it writes - the handler a
// delivery worker serves, the resource an informer watches, the attempt a
// retry is at - so that with [log] format = "json" they are keys of each
// line's object beside "msg", and a log pipeline can filter on them without
// parsing the message. A field lasts as long as its Scope; scopes nest.
// Thread-local: spdlog's loggers here are synchronous, so a line is
// formatted on the thread that wrote it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/pattern_formatter.h>

namespace kubetrail::log_context {

class Scope {
 public:
  Scope(std::string_view key, std::string_view value);
  Scope(std::string_view key, uint64_t value);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
};

// `,"key":value` for every field in force on this thread, outermost first.
void append_json_fields(std::string& out);

// The formatter of [log] format = "json": one object per line with "time"
// (UTC, milliseconds), "level", "msg" and this thread's fields.
std::unique_ptr<spdlog::formatter> json_formatter();

}  // namespace kubetrail::log_context
