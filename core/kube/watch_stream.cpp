#include "kube/watch_stream.hpp"

#include <cstdio>

namespace kubetrail::kube {

namespace {
std::string describe_byte(char c) {
  char buf[16];
  unsigned char u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f)
    std::snprintf(buf, sizeof buf, "'%c'", c);
  else
    std::snprintf(buf, sizeof buf, "0x%02x", u);
  return buf;
}
}  // namespace

Result<bool> JsonFramer::too_large(uint64_t size) const {
  return Result<bool>::failure("the event starting at byte offset " + std::to_string(frame_start_) + " exceeds " +
                               std::to_string(max_frame_) + " bytes (" + std::to_string(size) +
                               " so far): not a watch event of a real object");
}

Result<bool> JsonFramer::feed(std::string_view bytes, const FrameFn& on_frame) {
  // Scan only for structure: braces outside strings. Validation of the JSON
  // itself is the parser's job once a frame is complete.
  size_t segment_start = 0;  // start of the bytes of the current frame within `bytes`
  for (size_t i = 0; i < bytes.size(); ++i) {
    char c = bytes[i];
    if (depth_ == 0) {
      if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
      if (c != '{')
        return Result<bool>::failure("unexpected byte " + describe_byte(c) + " at byte offset " +
                                     std::to_string(offset_ + i) + " (expected '{' starting a watch event)");
      depth_ = 1;
      frame_start_ = offset_ + i;
      segment_start = i;
      continue;
    }
    if (in_string_) {
      if (escaped_)
        escaped_ = false;
      else if (c == '\\')
        escaped_ = true;
      else if (c == '"')
        in_string_ = false;
      continue;
    }
    if (c == '"')
      in_string_ = true;
    else if (c == '{' || c == '[')
      ++depth_;
    else if (c == '}' || c == ']') {
      if (--depth_ == 0) {
        std::string_view piece = bytes.substr(segment_start, i + 1 - segment_start);
        if (partial_.size() + piece.size() > max_frame_) return too_large(partial_.size() + piece.size());
        if (partial_.empty()) {
          on_frame(piece, frame_start_);
        } else {
          partial_.append(piece);
          on_frame(partial_, frame_start_);
          partial_.clear();
        }
      }
    }
  }
  if (depth_ > 0) {
    std::string_view rest = bytes.substr(segment_start);
    if (partial_.size() + rest.size() > max_frame_) return too_large(partial_.size() + rest.size());
    partial_.append(rest);
  }
  offset_ += bytes.size();
  return true;
}

Result<bool> JsonFramer::finish() const {
  if (depth_ > 0)
    return Result<bool>::failure("stream truncated: the event starting at byte offset " + std::to_string(frame_start_) +
                                 " is incomplete at end of stream (byte offset " + std::to_string(offset_) + ")");
  return true;
}

}  // namespace kubetrail::kube
