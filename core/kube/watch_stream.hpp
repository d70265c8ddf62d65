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

  // A frame that a newline ends, offered before it is scanned; true when it
  // was taken (it parsed as one JSON value, and was handled).
  using LineFn = std::function<bool(std::string_view frame, uint64_t offset)>;

  // Offers each frame that runs from its '{' to the next newline (less the
  // whitespace before it) to `try_line` before scanning it: kube-apiserver
  // writes every watch event as one line of compact JSON (Go's
  // json.Encoder), so finding the newline (memchr) and letting the parser
  // check that the line is one value does the framing in the pass the parse
  // makes anyway, instead of a pass of the framer's own first (perf: 8% of
  // the watch thread at 100k pods, 1.7-3 us an 8 KB event). A line refused
  // (it does not end in '}', does not parse, or is longer than the largest
  // frame) is framed exactly from its '{', and its frames go to on_frame as
  // without this: the frames, offsets and errors are the same either way
  // (a line that parses whole is exactly the frame the scan would find),
  // only which callback gets them differs. Pretty-printed streams (kubectl
  // before 1.28) cost a look at each event's first line.
  void offer_lines(LineFn try_line) { try_line_ = std::move(try_line); }

  // Feeds the next bytes; calls on_frame for each frame completed by them.
  // Returns an error (naming the byte offset) at the first byte that cannot
  // be part of a stream of objects; frames before it have been delivered.
  // `readable_after`: bytes past the end of `bytes` the caller guarantees
  // readable (a simdjson::padded_string's padding). A frame that lies whole
  // in `bytes` with kReadablePast readable bytes after it is handed on as a
  // view into them; any other is a view into the framer's buffer, valid
  // only during the call.
  Result<bool> feed(std::string_view bytes, const FrameFn& on_frame, size_t readable_after = 0);

  // End of stream: an error if a frame was begun and not completed. With
  // lines offered, bytes held for a line whose newline never came are
  // framed exactly first, and the frames they hold go to on_frame.
  Result<bool> finish(const FrameFn& on_frame = {});

  uint64_t offset() const noexcept { return offset_; }
  // Bytes of the incomplete frame held back (bounded by the largest event).
  size_t pending_bytes() const noexcept { return partial_.size(); }

 private:
  struct Block;
  static Block classify(const char* p) noexcept;
  Result<bool> too_large(uint64_t size) const;
  bool offer(std::string_view line, size_t readable_after);
  Result<bool> rescan(const FrameFn& on_frame);
  static size_t trimmed_end(std::string_view held, std::string_view bytes, size_t end) noexcept;
  size_t max_frame_;
  LineFn try_line_;
  std::string partial_;  // bytes of the frame being assembled
  uint64_t offset_ = 0;  // stream offset of the next byte fed
  uint64_t frame_start_ = 0;
  int depth_ = 0;
  bool in_string_ = false;
  bool escaped_ = false;
  // partial_ holds the start of a frame offered as a line whose newline has
  // not come yet: not scanned, so depth_ is 1 in name only (rescan()).
  bool unscanned_ = false;
  // A line was refused (or bytes held for one were framed again): the
  // stream is scanned exactly until a newline between frames, where lines
  // are offered again. Per line, not per frame: frames back to back on a
  // refused line are scanned once, not each offered the rest of the line.
  bool exact_to_newline_ = false;
};

}  // namespace kubetrail::kube
