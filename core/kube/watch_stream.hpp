// Decoding of Kubernetes watch streams: the bytes of a `?watch=1` response
// (newline-delimited JSON in HTTP chunks of any size) and the output of
// `kubectl get --watch --output-watch-events -o json` (one event per line in
// kubectl >= 1.28, pretty-printed back to back before). Both are a sequence
// of top-level JSON objects separated by whitespace; the framer finds their
// boundaries incrementally so that a stream is never buffered whole and every
// error names the byte offset at which it happened.
//
// Not thread-safe: one framer per stream.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "model/watch_event.hpp"

namespace kubetrail::kube {

// Splits a byte stream into complete top-level JSON objects.
class JsonFramer {
 public:
  // The largest frame held back: kube-apiserver refuses objects over ~1.5 MB
  // (etcd's request limit) and watch events of them are a little larger, so
  // 16 MiB never stops a real stream while a response that opens '{' and
  // never closes it cannot take the process's memory.
  static constexpr size_t kDefaultMaxFrame = size_t{16} << 20;
  explicit JsonFramer(size_t max_frame = kDefaultMaxFrame) : max_frame_(max_frame) {}

  // Every frame handed on is followed by at least this many readable bytes
  // that are not part of it (the rest of the bytes fed, or spare capacity of
  // the framer's own buffer): a parser that reads ahead, as simdjson does,
  // can parse it where it lies instead of copying it into a padded buffer
  // of its own first (perf: an 8 KB copy per event). Only a frame that ends
  // too near the end of the bytes fed is copied, into the framer's buffer.
  static constexpr size_t kReadablePast = 64;

  // A complete frame: its bytes and the offset of its first byte in the stream.
  using FrameFn = std::function<void(std::string_view frame, uint64_t offset)>;

  // Feeds the next bytes; calls on_frame for each frame completed by them.
  // Returns an error (naming the byte offset) at the first byte that cannot
  // be part of a stream of objects; frames before it have been delivered.
  // `readable_after`: bytes past the end of `bytes` the caller guarantees
  // readable (a simdjson::padded_string's padding). A frame that lies whole
  // in `bytes` with kReadablePast readable bytes after it is handed on as a
  // view into them; any other is a view into the framer's buffer, valid
  // only during the call.
  Result<bool> feed(std::string_view bytes, const FrameFn& on_frame, size_t readable_after = 0);

  // End of stream: an error if a frame was begun and not completed.
  Result<bool> finish() const;

  uint64_t offset() const noexcept { return offset_; }
  // Bytes of the incomplete frame held back (bounded by the largest event).
  size_t pending_bytes() const noexcept { return partial_.size(); }

 private:
  struct Block;
  static Block classify(const char* p) noexcept;
  Result<bool> too_large(uint64_t size) const;
  size_t max_frame_;
  std::string partial_;  // bytes of the frame being assembled
  uint64_t offset_ = 0;  // stream offset of the next byte fed
  uint64_t frame_start_ = 0;
  int depth_ = 0;
  bool in_string_ = false;
  bool escaped_ = false;
};

}  // namespace kubetrail::kube
