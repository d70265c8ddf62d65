#include "state/log_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/error.hpp"

namespace kubetrail::state {

namespace {

constexpr char kMagic[8] = {'K', 'T', 'L', 'O', 'G', '\0', '\0', '\1'};

// Little-endian, whatever the host: the file moves between machines.
template <int Bytes>
void put_le(char* at, uint64_t v) {
  for (int i = 0; i < Bytes; ++i) at[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
template <int Bytes>
void append_le(std::string& out, uint64_t v) {
  char b[Bytes];
  put_le<Bytes>(b, v);
  out.append(b, Bytes);
}
void put_u32(std::string& out, uint32_t v) { append_le<4>(out, v); }
void put_u64(std::string& out, uint64_t v) { append_le<8>(out, v); }

// The frame header of `payload`: its length and checksum.
std::array<char, LogFile::kFrameHeaderBytes> frame_header(std::string_view payload) {
  std::array<char, LogFile::kFrameHeaderBytes> h;
  put_le<4>(h.data(), payload.size());
  put_le<8>(h.data() + 4, XXH3_64bits(payload.data(), payload.size()));
  return h;
}
// One load where the host is little-endian (a fold reads every entry's five
// lengths and two numbers: a byte loop each was a third of its instructions).
template <int Bytes>
uint64_t get_le(const char* p) {
  static_assert(Bytes == 4 || Bytes == 8);
  if constexpr (std::endian::native == std::endian::little) {
    std::conditional_t<Bytes == 4, uint32_t, uint64_t> v;
    std::memcpy(&v, p, Bytes);
    return v;
  } else {
    uint64_t v = 0;
    for (int i = Bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
    return v;
  }
}

std::string errno_text() { return std::strerror(errno); }

// Reads one entry of a checksummed payload at `at`; false when the payload
// does not hold a whole entry there (then `why` says what is wrong).
bool read_entry(std::string_view payload, size_t& at, LogEntry& e, size_t& body_at, std::string& why) {
  if (payload.size() - at < 17) {
    why = "an entry is cut short";
    return false;
  }
  auto kind = static_cast<unsigned char>(payload[at]);
  if (kind > kLastLogKind) {
    why = "unknown entry kind " + std::to_string(kind);
    return false;
  }
  e.kind = static_cast<LogKind>(kind);
  e.seq = static_cast<int64_t>(get_le<8>(payload.data() + at + 1));
  e.codec = static_cast<int64_t>(get_le<8>(payload.data() + at + 9));
  at += 17;
  std::string_view* fields[] = {&e.resource, &e.key, &e.uid, &e.resource_version, &e.body};
  for (std::string_view* f : fields) {
    if (payload.size() - at < 4) {
      why = "an entry is cut short";
      return false;
    }
    size_t n = get_le<4>(payload.data() + at);
    at += 4;
    if (n > payload.size() - at) {
      why = "a field claims " + std::to_string(n) + " bytes past the frame's end";
      return false;
    }
    if (f == &e.body) body_at = at;
    *f = payload.substr(at, n);
    at += n;
  }
  return true;
}

}  // namespace

size_t LogFile::encode(std::string& payload, const LogEntry& e, size_t* key_at) {
  payload.push_back(static_cast<char>(e.kind));
  put_u64(payload, static_cast<uint64_t>(e.seq));
  put_u64(payload, static_cast<uint64_t>(e.codec));
  size_t body_at = 0;
  for (const std::string_view* f : {&e.resource, &e.key, &e.uid, &e.resource_version, &e.body}) {
    put_u32(payload, static_cast<uint32_t>(f->size()));
    body_at = payload.size();
    if (f == &e.key && key_at) *key_at = body_at;
    payload.append(f->data(), f->size());
  }
  return body_at;
}

std::string LogFile::frame(std::string_view payload) {
  auto h = frame_header(payload);
  std::string out;
  out.reserve(h.size() + payload.size());
  out.append(h.data(), h.size());
  out.append(payload);
  return out;
}

LogFile::Scan LogFile::scan(std::string_view bytes,
                            const std::function<void(const LogEntry&, size_t body_at)>& on_entry) {
  return scan(bytes, kHeaderBytes, bytes.size(), [&](const LogEntry& e, const Place& p) { on_entry(e, p.body_at); });
}

LogFile::Scan LogFile::scan(std::string_view bytes, size_t from, size_t to,
                            const std::function<void(const LogEntry&, const Place&)>& on_entry) {
  Scan s;
  // A snapshot's frame of 1 MiB holds ~4,000 Pods' entries (~2 MB kept here).
  constexpr size_t kDecodedEntries = 16384;
  std::vector<std::pair<LogEntry, size_t>> decoded;  // a frame's entries, each with its body's offset in the payload
  bytes = bytes.substr(0, std::min(to, bytes.size()));
  size_t at = std::max(from, kHeaderBytes);
  s.end = at;
  while (at < bytes.size()) {
    auto stop = [&](const std::string& why) {
      s.stopped = "byte " + std::to_string(at) + ": " + why;
      return s;
    };
    if (bytes.size() - at < kFrameHeaderBytes) return stop("a frame header is cut short");
    size_t n = get_le<4>(bytes.data() + at);
    uint64_t sum = get_le<8>(bytes.data() + at + 4);
    if (n > kMaxFrameBytes) return stop("a frame claims " + std::to_string(n) + " bytes");
    if (n > bytes.size() - at - kFrameHeaderBytes) return stop("a frame is cut short");
    std::string_view payload = bytes.substr(at + kFrameHeaderBytes, n);
    if (XXH3_64bits(payload.data(), payload.size()) != sum) return stop("a frame does not match its checksum");
    // A frame that checksums is read whole or not at all: entries are
    // handed on only once all of them parsed. The first kDecodedEntries are
    // decoded once, kept from the check for the hand-off (a fold reads
    // every entry of the log and the snapshot); a frame with more (none
    // kubetrail writes) has the rest decoded again, so what is kept stays
    // bounded whatever a frame claims.
    std::string why;
    decoded.clear();
    size_t pos = 0, rest_at = 0, count = 0;
    for (LogEntry e; pos < payload.size(); ++count) {
      size_t body_at = 0;
      if (!read_entry(payload, pos, e, body_at, why)) return stop(why);
      if (decoded.size() < kDecodedEntries) {
        decoded.emplace_back(e, body_at);
        rest_at = pos;
      }
    }
    auto hand_on = [&](const LogEntry& e, size_t body_at) {
      on_entry(e, {at + kFrameHeaderBytes + body_at, at, at + kFrameHeaderBytes + n});
    };
    for (const auto& [e, body_at] : decoded) hand_on(e, body_at);
    for (size_t i = decoded.size(); i < count; ++i) {
      LogEntry e;
      size_t body_at = 0;
      read_entry(payload, rest_at, e, body_at, why);
      hand_on(e, body_at);
    }
    at += kFrameHeaderBytes + n;
    s.end = at;
  }
  return s;
}

LogFile LogFile::open(const std::string& path, uint64_t id) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw Error("state log " + path + " cannot be opened: " + errno_text());
  LogFile log(fd, path, id, 0);
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw Error("state log " + path + " cannot be read: " + errno_text());
  log.size_ = static_cast<size_t>(st.st_size);
  if (log.size_ == 0) {
    std::string h = log.header();
    log.write_all(fd, h, "written");
    log.size_ = h.size();
    return log;
  }
  std::string head;
  if (log.size_ < kHeaderBytes || !log.read(0, kHeaderBytes, head).empty() ||
      std::memcmp(head.data(), kMagic, sizeof kMagic) != 0)
    throw Error("state log " + path + " is not a kubetrail state log (no header)");
  if (uint64_t theirs = get_le<8>(head.data() + 8); theirs != id)
    throw Error("state log " + path + " belongs to another state store (id " + std::to_string(theirs) +
                ", this store's is " + std::to_string(id) + ")");
  return log;
}

LogFile::Mapping& LogFile::Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    if (at_) ::munmap(at_, size_);
    at_ = o.at_;
    size_ = o.size_;
    o.at_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

LogFile::Mapping::~Mapping() {
  if (at_) ::munmap(at_, size_);
}

LogFile::Mapping LogFile::map() const {
  // MAP_POPULATE: the pages are in the page cache (just written); one call
  // maps them all instead of a fault per 4 KB page.
  void* at = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd_, 0);
  if (at == MAP_FAILED) throw Error("state log " + path_ + " cannot be mapped: " + errno_text());
  return Mapping(at, size_);
}

LogFile::LogFile(LogFile&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)), id_(o.id_), size_(o.size_) {
  o.fd_ = -1;
}

LogFile& LogFile::operator=(LogFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    id_ = o.id_;
    size_ = o.size_;
    o.fd_ = -1;
  }
  return *this;
}

LogFile::~LogFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::string LogFile::header() const {
  std::string h(kMagic, sizeof kMagic);
  put_u64(h, id_);
  return h;
}

void LogFile::write_all(int fd, std::string_view bytes, const char* what) const {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error("state log " + path_ + " cannot be " + what + ": " + errno_text());
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

void LogFile::truncate(size_t size) {
  if (::ftruncate(fd_, static_cast<off_t>(size)) != 0 || ::lseek(fd_, static_cast<off_t>(size), SEEK_SET) < 0)
    throw Error("state log " + path_ + " cannot be cut back to byte " + std::to_string(size) + ": " + errno_text());
  size_ = size;
}

bool LogFile::write_frame(int fd, size_t at, std::string_view payload) {
  auto h = frame_header(payload);
  const size_t total = h.size() + payload.size();
  size_t done = 0;
  while (done < total) {
    iovec parts[2];
    int n_parts = 0;
    if (done < h.size()) parts[n_parts++] = {h.data() + done, h.size() - done};
    size_t from = done > h.size() ? done - h.size() : 0;
    if (from < payload.size()) parts[n_parts++] = {const_cast<char*>(payload.data()) + from, payload.size() - from};
    ssize_t n = ::pwritev(fd, parts, n_parts, static_cast<off_t>(at + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

size_t LogFile::append(std::string_view payload) {
  if (payload.size() > kMaxFrameBytes)
    throw Error("state log " + path_ + ": a save of " + std::to_string(payload.size()) +
                " bytes is larger than a frame");
  const size_t at = size_;
  if (!write_frame(fd_, at, payload)) {
    std::string why = errno_text();
    // A frame half written (disk full) would end every later read there:
    // cut it off so the next append follows the last whole frame.
    if (::ftruncate(fd_, static_cast<off_t>(at)) == 0) size_ = at;
    throw Error("state log " + path_ + " cannot be written: " + why);
  }
  size_ = at + kFrameHeaderBytes + payload.size();
  return at + kFrameHeaderBytes;
}

LogFile::Rewrite LogFile::rewrite() {
  std::string tmp = path_ + ".new";
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw Error("state log " + tmp + " cannot be created: " + errno_text());
  Rewrite w(*this, fd, std::move(tmp), 0);
  std::string h = header();
  write_all(fd, h, "written");
  w.size_ = h.size();
  return w;
}

LogFile::Rewrite::Rewrite(Rewrite&& o) noexcept : of_(o.of_), fd_(o.fd_), tmp_(std::move(o.tmp_)), size_(o.size_) {
  o.fd_ = -1;
}

LogFile::Rewrite::~Rewrite() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(tmp_.c_str());
}

size_t LogFile::Rewrite::add(std::string_view payload) {
  if (payload.size() > kMaxFrameBytes)
    throw Error("state log " + tmp_ + ": a frame of " + std::to_string(payload.size()) + " bytes is too large");
  if (!write_frame(fd_, size_, payload)) throw Error("state log " + tmp_ + " cannot be written: " + errno_text());
  size_t at = size_ + kFrameHeaderBytes;
  size_ = at + payload.size();
  return at;
}

void LogFile::Rewrite::commit() {
  // Synced before the rename: after a power loss the file is the old one
  // or the new one, never an empty file in its place.
  if (::fsync(fd_) != 0) throw Error("state log " + tmp_ + " cannot be synced: " + errno_text());
  if (::rename(tmp_.c_str(), of_->path_.c_str()) != 0)
    throw Error("state log " + tmp_ + " cannot be renamed over " + of_->path_ + ": " + errno_text());
  if (of_->fd_ >= 0) ::close(of_->fd_);
  of_->fd_ = fd_;
  of_->size_ = size_;
  fd_ = -1;
}

size_t LogFile::replace(std::string_view payload) {
  Rewrite w = rewrite();
  if (!payload.empty()) w.add(payload);
  w.commit();
  return kHeaderBytes + kFrameHeaderBytes;
}

std::string LogFile::read(size_t offset, size_t size, std::string& out) const {
  out.resize(size);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd_, out.data() + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return "state log " + path_ + " cannot be read at byte " + std::to_string(offset) + ": " + errno_text();
    if (n == 0)
      return "state log " + path_ + " ends before byte " + std::to_string(offset + size) +
             " (changed by someone else?)";
    done += static_cast<size_t>(n);
  }
  return {};
}

}  // namespace kubetrail::state
