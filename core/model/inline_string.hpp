// A string kept inside its owner up to kInline bytes, on the heap beyond.
//
// Why: an object's uid (36 characters, longer than std::string's 15 in
// place) is read at every event of it (ChangeDetector::replaced(): the
// object under this name is still the one cached). On the heap it was one
// more cache miss an event at 100,000 objects (docs/PERFORMANCE.md,
// "Twentieth session"); here it lies in the cache's entry, which the
// lookup has just read. A longer one (an aggregated API server may send
// anything) is kept whole on the heap, never cut.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string_view>

namespace kubetrail::model {

class InlineString {
 public:
  static constexpr size_t kInline = 40;

  InlineString() noexcept {}
  explicit InlineString(std::string_view s) { construct(s); }
  InlineString(const InlineString& o) { construct(o.view()); }
  InlineString(InlineString&& o) noexcept { take(o); }
  InlineString& operator=(const InlineString& o) {
    if (this != &o) assign(o.view());
    return *this;
  }
  InlineString& operator=(InlineString&& o) noexcept {
    if (this != &o) {
      release();
      take(o);
    }
    return *this;
  }
  InlineString& operator=(std::string_view s) {
    assign(s);
    return *this;
  }
  ~InlineString() { release(); }

  // `s` may lie in this string's own bytes.
  void assign(std::string_view s) {
    if (!on_heap()) return construct(s);  // in place, memmove: s may overlap
    char* const old_heap = heap_;
    construct(s);
    delete[] old_heap;  // after the copy: `s` may have been in it
  }

  std::string_view view() const noexcept { return {on_heap() ? heap_ : inline_, size_}; }
  operator std::string_view() const noexcept { return view(); }
  size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  friend bool operator==(const InlineString& a, std::string_view b) noexcept { return a.view() == b; }
  friend bool operator==(const InlineString& a, const InlineString& b) noexcept { return a.view() == b.view(); }

 private:
  bool on_heap() const noexcept { return size_ > kInline; }
  // Holds `s`, whatever it held before (freed or not by the caller).
  void construct(std::string_view s) {
    if (s.size() > UINT32_MAX) throw std::length_error("InlineString: longer than 4 GiB");  // size_ holds it
    if (s.size() <= kInline) {
      if (!s.empty()) std::memmove(inline_, s.data(), s.size());
    } else {
      char* fresh = new char[s.size()];
      std::memcpy(fresh, s.data(), s.size());
      heap_ = fresh;
    }
    size_ = static_cast<uint32_t>(s.size());
  }
  void release() noexcept {
    if (on_heap()) delete[] heap_;
  }
  void take(InlineString& o) noexcept {  // this holds nothing
    size_ = o.size_;
    if (o.on_heap())
      heap_ = o.heap_;
    else if (size_ > 0)
      std::memcpy(inline_, o.inline_, size_);
    o.size_ = 0;
  }

  union {
    char inline_[kInline];
    char* heap_;
  };
  uint32_t size_ = 0;
};

}  // namespace kubetrail::model
