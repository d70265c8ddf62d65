#include "model/frame_arena.hpp"

#include <sys/mman.h>

#include <bit>
#include <new>
#include <utility>

namespace kubetrail::model {

namespace {
// A block aligned to its own size, so that the kernel can map it with one
// huge page: mapped twice as large, then the unaligned ends given back.
char* map_block() {
  constexpr size_t n = FrameArena::kBlockBytes;
  void* p = mmap(nullptr, 2 * n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  auto* base = static_cast<char*>(p);
  const uintptr_t at = reinterpret_cast<uintptr_t>(base);
  char* block = base + ((n - at % n) % n);
  if (block > base) munmap(base, static_cast<size_t>(block - base));
  if (char* tail = block + n; tail < base + 2 * n) munmap(tail, static_cast<size_t>(base + 2 * n - tail));
#ifdef MADV_HUGEPAGE
  // Advice only: without transparent huge pages (or with them "never") the
  // block is faulted in 4 KiB pages like any other memory.
  madvise(block, n, MADV_HUGEPAGE);
#endif
  return block;
}
}  // namespace

// Eight classes of 16 bytes up to 128, then eight a doubling: the slot for a
// size in (2^b, 2^(b+1)] is 2^b plus the next multiple of 2^(b-3).
uint32_t FrameArena::class_of(uint32_t size) noexcept {
  if (size <= 128) return size == 0 ? 0 : (size + 15) / 16 - 1;
  const uint32_t s = size - 1;
  const uint32_t b = static_cast<uint32_t>(std::bit_width(s)) - 1;  // 2^b <= s < 2^(b+1), b >= 7
  return 8 + (b - 7) * 8 + ((s >> (b - 3)) - 8);
}

uint32_t FrameArena::slot_size(uint32_t size_class) noexcept {
  if (size_class < 8) return (size_class + 1) * 16;
  const uint32_t b = 7 + (size_class - 8) / 8;
  const uint32_t k = (size_class - 8) % 8;
  return (1u << b) + ((k + 1) << (b - 3));
}

char* FrameArena::allocate(uint32_t size) {
  if (size > kLargestSlot) {
    char* p = static_cast<char*>(::operator new(size));
    try {
      large_.insert(p);  // its node may not be had
    } catch (...) {
      ::operator delete(p);
      throw;
    }
    large_bytes_ += size;
    return p;
  }
  const uint32_t c = class_of(size);
  if (FreeSlot* slot = free_[c]) {
    free_[c] = slot->next;
    return reinterpret_cast<char*>(slot);
  }
  const size_t n = slot_size(c);
  if (static_cast<size_t>(end_ - next_) < n) {
    // The newest block's rest is too small: it goes to the free lists of
    // the classes it still fits, largest first, rather than being lost.
    while (next_ && end_ - next_ >= 16) {
      uint32_t rest = class_of(static_cast<uint32_t>(end_ - next_));
      if (slot_size(rest) > static_cast<size_t>(end_ - next_)) --rest;
      release(next_, slot_size(rest));
      next_ += slot_size(rest);
    }
    blocks_.reserve(blocks_.size() + 1);  // before the mapping: a throw here leaks nothing
    char* block = map_block();
    blocks_.push_back(block);
    next_ = block;
    end_ = block + kBlockBytes;
  }
  char* p = next_;
  next_ += n;
  return p;
}

void FrameArena::release(char* p, uint32_t size) noexcept {
  if (!p) return;
  if (size > kLargestSlot) {
    large_.erase(p);
    ::operator delete(p);
    large_bytes_ -= size;
    return;
  }
  const uint32_t c = class_of(size);
  auto* slot = reinterpret_cast<FreeSlot*>(p);
  slot->next = free_[c];
  free_[c] = slot;
}

void FrameArena::free_all() noexcept {
  for (char* b : blocks_) munmap(b, kBlockBytes);
  blocks_.clear();
  for (char* p : large_) ::operator delete(p);
  large_.clear();
  large_bytes_ = 0;
  next_ = end_ = nullptr;
  free_.fill(nullptr);
}

FrameArena::~FrameArena() { free_all(); }

FrameArena::FrameArena(FrameArena&& o) noexcept
    : blocks_(std::move(o.blocks_)),
      next_(std::exchange(o.next_, nullptr)),
      end_(std::exchange(o.end_, nullptr)),
      large_(std::move(o.large_)),
      large_bytes_(std::exchange(o.large_bytes_, 0)),
      free_(std::exchange(o.free_, {})) {
  o.blocks_.clear();
  o.large_.clear();
}

FrameArena& FrameArena::operator=(FrameArena&& o) noexcept {
  if (this != &o) {
    free_all();
    blocks_ = std::move(o.blocks_);
    o.blocks_.clear();
    next_ = std::exchange(o.next_, nullptr);
    end_ = std::exchange(o.end_, nullptr);
    large_ = std::move(o.large_);
    o.large_.clear();
    large_bytes_ = std::exchange(o.large_bytes_, 0);
    free_ = std::exchange(o.free_, {});
  }
  return *this;
}

}  // namespace kubetrail::model
