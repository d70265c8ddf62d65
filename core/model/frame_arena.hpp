// Memory for one cache's packed frames and encoded managers (ObjectStore):
// 2 MiB blocks of its own, which the kernel may back with huge pages
// (madvise), cut into slots by size class, with a free list per class.
//
// Why not malloc: at 100,000 pods the cache is most of what the initial
// sync writes to fresh memory, and malloc's arenas take it 4 KiB page by
// page - ~38,000 page faults, which on a paravirtualised VM cost ~10 us
// each and were 16% of the sync's watch thread (docs/PERFORMANCE.md,
// "Tenth session"); and an object's managers were nine allocations. glibc
// can advise huge pages only for its main arena (glibc.malloc.hugetlb with
// arena_max=1), and one arena shared by every thread made each event 3-7 us
// dearer. A block here is one fault.
//
// Size classes are geometric (eight a doubling, so a slot wastes at most an
// eighth of its frame): an object that grows a little at each update moves
// through few classes, and a slot it leaves is reused by any frame of its
// class. Frames above kLargestSlot (a huge ConfigMap's) are allocated alone.
// Everything goes back to the system with the arena.
//
// Not thread-safe: owned by one ObjectStore.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <unordered_set>
#include <vector>

namespace kubetrail::model {

class FrameArena {
 public:
  static constexpr size_t kBlockBytes = size_t{2} << 20;
  static constexpr uint32_t kLargestSlot = 64u << 10;

  FrameArena() = default;
  ~FrameArena();
  FrameArena(FrameArena&& o) noexcept;
  FrameArena& operator=(FrameArena&& o) noexcept;
  FrameArena(const FrameArena&) = delete;
  FrameArena& operator=(const FrameArena&) = delete;

  // Storage for `size` bytes (size > 0), until release(p, size) with the
  // same size. Throws std::bad_alloc when memory is out, like new.
  char* allocate(uint32_t size);
  void release(char* p, uint32_t size) noexcept;
  // Whether a slot given for `had` bytes also holds `size` bytes: a frame
  // replaced by one of its class is written in place.
  static bool same_slot(uint32_t had, uint32_t size) noexcept {
    return had <= kLargestSlot && size <= kLargestSlot && class_of(had) == class_of(size);
  }
  // Bytes a frame of `size` takes here (its slot).
  static size_t slot_bytes(uint32_t size) noexcept { return size > kLargestSlot ? size : slot_size(class_of(size)); }
  // Bytes held from the system: blocks, and frames too large for a slot.
  size_t held_bytes() const noexcept { return blocks_.size() * kBlockBytes + large_bytes_; }

  // The size-class arithmetic, exposed for its test.
  static uint32_t class_of(uint32_t size) noexcept;
  static uint32_t slot_size(uint32_t size_class) noexcept;
  static constexpr uint32_t kClasses = 80;

 private:
  struct FreeSlot {
    FreeSlot* next;
  };
  std::vector<char*> blocks_;
  char* next_ = nullptr;  // the unused rest of the newest block
  char* end_ = nullptr;
  std::unordered_set<char*> large_;  // frames above kLargestSlot, each its own allocation
  size_t large_bytes_ = 0;
  std::array<FreeSlot*, kClasses> free_{};
  void free_all() noexcept;
};

}  // namespace kubetrail::model
