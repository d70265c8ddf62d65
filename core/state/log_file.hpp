// The state store's log: a flat, append-only file of checksummed frames
// beside the SQLite file (PATH-log). What the watches save between folds -
// objects' new states, deletions, resourceVersions, and the change sets they
// amount to - goes here with one write(2) per save, instead of a SQLite
// transaction (state_bench, issue 12: the commit, its B-tree inserts and the
// compression they needed were three quarters of what state on cost per
// watch event).
//
// Layout (little-endian):
//   header   "KTLOG\0\0\1" then the u64 id of the store it belongs to
//   frame*   u32 payload length, u64 XXH3-64 of the payload, payload
//   payload  entry*: u8 kind, i64 seq, i64 codec, then five
//            u32-length-prefixed strings: resource, key, uid,
//            resource_version, body
// A frame is one save(): its entries are durable together or not at all.
// Reading stops at the first frame that is cut short or does not match its
// checksum (a write torn by kill -9 or a power loss); what follows it is
// never read, and the file is cut back there before anything is appended.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace kubetrail::state {

enum class LogKind : uint8_t {
  kObject = 0,           // key's new state: uid, resource_version, body = its JSON (codec as in `objects`)
  kDeleted = 1,          // key is gone
  kChangeSet = 2,        // key = the change set's id, body = its JSON; resource empty
  kResourceVersion = 3,  // resource_version = how far the resource's watch got
  // Snapshot files only (PATH-objects, state_store.hpp): seq = the last log
  // entry the snapshot holds.
  kFoldedThrough = 4,
  // The outbox file only (PATH-outbox, state/outbox_log.hpp):
  kOutboxRow = 5,        // seq = the row's; codec = position in the chain; resource = handler; key = the change
                         // set's id; uid = route; resource_version = created (unix seconds); body = its JSON
  kOutboxDelivered = 6,  // seq = a row now delivered
  kOutboxDead = 7,       // seq = a row now a dead letter; body = why
  kRoutedThrough = 8,    // seq = every journal entry up to it is routed (a seq of the checkpoint log)
  kOutboxDone = 9,       // a delivered row a rewrite kept to guard its id (kOutboxRow's fields, no body)
  // An operator's repair of a dead letter (kubetrail dead-letters):
  kOutboxRequeued = 10,  // seq = a dead letter forgotten; the kOutboxRow after it in the frame owes its id again
  kOutboxDropped = 11,   // seq = a dead letter given up on: kept as delivered, so its id is never handed on
};
constexpr uint8_t kLastLogKind = 11;

struct LogEntry {
  LogKind kind = LogKind::kObject;
  int64_t seq = 0;
  std::string_view resource{}, key{}, uid{}, resource_version{}, body{};
  // 0: body is the text; N > 0: a zstd frame against dictionary N
  // (common/dictionary_codec.hpp), so that a fold stores it as it is.
  int64_t codec = 0;
};

class LogFile {
 public:
  static constexpr size_t kHeaderBytes = 16;
  static constexpr size_t kFrameHeaderBytes = 12;
  // A frame larger than this is not one kubetrail wrote (objects are at most
  // 64 MiB: dictionary_codec.hpp; a save holds a page of them at most).
  static constexpr uint32_t kMaxFrameBytes = 1u << 30;

  // Appends an entry to a payload being built; returns the offset of its
  // body within the payload (where journal reads find a change set), and
  // in `key_at`, when given, the offset of its key (where the outbox finds
  // a row's id).
  static size_t encode(std::string& payload, const LogEntry& e, size_t* key_at = nullptr);
  // How many bytes encode() appends for `e`.
  static constexpr size_t encoded_size(const LogEntry& e) noexcept {
    return 1 + 8 + 8 + 5 * 4 + e.resource.size() + e.key.size() + e.uid.size() + e.resource_version.size() +
           e.body.size();
  }
  // A payload as the frame that holds it (length, checksum, payload).
  static std::string frame(std::string_view payload);

  // Reads the frames of `bytes` (a whole file, header included, whose header
  // was checked): on_entry sees each entry of each whole frame in order,
  // with the file offset of its body. The result is where the readable part
  // ends and, when that is before the end, why (naming the byte offset).
  struct Scan {
    size_t end = kHeaderBytes;
    std::string stopped{};
  };
  static Scan scan(std::string_view bytes, const std::function<void(const LogEntry&, size_t body_at)>& on_entry);
  // scan() of the frames from byte `from` to byte `to` (frame boundaries),
  // telling on_entry also where the frame holding the entry begins and ends.
  struct Place {
    size_t body_at = 0, frame_begin = 0, frame_end = 0;
  };
  static Scan scan(std::string_view bytes, size_t from, size_t to,
                   const std::function<void(const LogEntry&, const Place&)>& on_entry);

  // Opens the log at `path`, creating it for store `id` when it is missing.
  // A file with another id or no header is a kubetrail::Error naming it.
  static LogFile open(const std::string& path, uint64_t id);
  LogFile(LogFile&& o) noexcept;
  LogFile& operator=(LogFile&& o) noexcept;
  LogFile(const LogFile&) = delete;
  LogFile& operator=(const LogFile&) = delete;
  ~LogFile();

  // Cuts the file back to `size` (the end of what scan() could read).
  void truncate(size_t size);
  // Appends one frame holding `payload` with one write; returns the file
  // offset of the payload. On failure the file is cut back to where it was
  // and a kubetrail::Error says why.
  size_t append(std::string_view payload);
  // Replaces the file with one holding only `payload` as its one frame (or
  // no frame when empty): written beside it, synced and renamed over it.
  // Returns the offset of the payload in the new file.
  size_t replace(std::string_view payload);
  // A new version of the file written beside it (PATH.new) frame by frame;
  // commit() syncs it and renames it over the file, which from then on
  // reads and appends the new version. Dropped uncommitted, it is removed
  // and the file is as it was.
  class Rewrite {
   public:
    Rewrite(Rewrite&& o) noexcept;
    Rewrite& operator=(Rewrite&&) = delete;
    Rewrite(const Rewrite&) = delete;
    Rewrite& operator=(const Rewrite&) = delete;
    ~Rewrite();
    // Appends one frame holding `payload`; returns the offset of the payload.
    size_t add(std::string_view payload);
    size_t size() const noexcept { return size_; }
    void commit();

   private:
    friend class LogFile;
    Rewrite(LogFile& of, int fd, std::string tmp, size_t size) : of_(&of), fd_(fd), tmp_(std::move(tmp)), size_(size) {}
    LogFile* of_;
    int fd_;
    std::string tmp_;
    size_t size_;
  };
  Rewrite rewrite();
  // The whole file as it is now, mapped read-only (for scan()): no copy of
  // tens of megabytes into the heap per fold (state_bench: that copy and
  // its page faults cost as much as the fold's SQLite work). Stays valid
  // after replace() (the old file lives on while mapped).
  class Mapping {
   public:
    Mapping() = default;
    Mapping(void* at, size_t size) : at_(at), size_(size) {}
    Mapping(Mapping&& o) noexcept : at_(o.at_), size_(o.size_) { o.at_ = nullptr, o.size_ = 0; }
    Mapping& operator=(Mapping&& o) noexcept;
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping();
    std::string_view bytes() const noexcept { return {static_cast<const char*>(at_), size_}; }

   private:
    void* at_ = nullptr;
    size_t size_ = 0;
  };
  Mapping map() const;
  // `size` bytes at `offset`, or an error message naming the file.
  std::string read(size_t offset, size_t size, std::string& out) const;
  size_t size() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }

 private:
  LogFile(int fd, std::string path, uint64_t id, size_t size) : fd_(fd), path_(std::move(path)), id_(id), size_(size) {}
  std::string header() const;
  void write_all(int fd, std::string_view bytes, const char* what) const;
  // Header and payload at `at` of `fd` in one positioned write (no copy of
  // the payload into a frame, no seek); errno is left set when it fails.
  static bool write_frame(int fd, size_t at, std::string_view payload);
  int fd_ = -1;
  std::string path_;
  uint64_t id_ = 0;
  size_t size_ = 0;
};

}  // namespace kubetrail::state
