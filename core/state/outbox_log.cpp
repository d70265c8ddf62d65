#include "state/outbox_log.hpp"

#include <xxhash.h>

#include <algorithm>
#include <charconv>
#include <chrono>

#include <spdlog/spdlog.h>

#include "common/error.hpp"

namespace kubetrail::state {

namespace {
// No store counts this far; a seq above it in a file was not written by kubetrail.
constexpr int64_t kMaxSeq = int64_t{1} << 62;
// A rewrite's frames hold about this much each.
constexpr size_t kFrameBytes = size_t{1} << 20;

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The fixed part of an encoded entry: kind, seq, codec, five lengths.
constexpr size_t kEntryBytes = 1 + 8 + 8 + 5 * 4;

// A row as the file holds it: a delivered one as its id alone, a pending
// one whole, a dead one whole and its reason. The one encoding of rewrites
// and of the schema 4 conversion.
void encode_row(std::string& payload, int64_t seq, std::string_view handler, std::string_view id,
                std::string_view route, int64_t created, std::string_view json, int position, bool delivered,
                const std::string* dead_reason) {
  const std::string at = std::to_string(created);
  if (delivered) {
    LogFile::encode(payload, {LogKind::kOutboxDone, seq, handler, id, {}, at, {}, position});
    return;
  }
  LogFile::encode(payload, {LogKind::kOutboxRow, seq, handler, id, route, at, json, position});
  if (dead_reason) LogFile::encode(payload, {LogKind::kOutboxDead, seq, {}, {}, {}, {}, *dead_reason});
}
}  // namespace

uint64_t OutboxLog::hash_of(std::string_view id, std::string_view handler) {
  // The handler's hash seeded with the id's: ("a", "bc") and ("ab", "c") differ.
  return XXH3_64bits_withSeed(handler.data(), handler.size(), XXH3_64bits(id.data(), id.size()));
}

uint32_t OutboxLog::row_bytes(size_t id, size_t handler, size_t route, size_t json, size_t reason) {
  // Near enough to what the row takes in a rewritten file: its entry (the
  // created time as ~10 digits), and a dead letter's second entry.
  size_t n = kEntryBytes + id + handler + route + 10 + json;
  if (reason) n += kEntryBytes + reason;
  return static_cast<uint32_t>(std::min<size_t>(n, UINT32_MAX));
}

std::unique_ptr<OutboxLog> OutboxLog::open(const std::string& path, uint64_t id, size_t rewrite_bytes) {
  std::unique_ptr<OutboxLog> log(new OutboxLog(LogFile::open(path, id), rewrite_bytes));
  log->load();
  return log;
}

uint16_t OutboxLog::handler_index(std::string_view handler) {
  if (auto it = handler_of_.find(std::string(handler)); it != handler_of_.end()) return it->second;
  if (handlers_.size() >= UINT16_MAX)
    throw Error("outbox " + path() + ": more than " + std::to_string(UINT16_MAX) + " handler names");
  auto index = static_cast<uint16_t>(handlers_.size());
  handlers_.emplace_back(handler);
  handler_of_.emplace(std::string(handler), index);
  pending_of_.emplace_back();
  return index;
}

std::string OutboxLog::id_of(const Slot& s) const {
  std::string id;
  if (std::string why = file_.read(s.id_at, s.id_size, id); !why.empty()) throw Error(why);
  return id;
}

int64_t OutboxLog::find(std::string_view id, uint16_t handler, uint64_t hash) const {
  auto [from, to] = known_.equal_range(hash);
  for (auto it = from; it != to; ++it) {
    const Slot& s = rows_.at(it->second);
    // A hash is not the key: two ids may share one (then read the id back).
    if (s.handler == handler && s.id_size == id.size() && id_of(s) == id) return it->second;
  }
  return 0;
}

bool OutboxLog::holds(std::string_view id, std::string_view handler) const {
  auto h = handler_of_.find(std::string(handler));
  return h != handler_of_.end() && find(id, h->second, hash_of(id, handler)) != 0;
}

// Reads the file into the indexes. Entries are applied in the order
// written, so a mark always follows the row it settles.
void OutboxLog::load() {
  rows_.clear();
  known_.clear();
  for (auto& p : pending_of_) p.clear();
  pending_count_ = 0;
  live_bytes_ = 0;
  auto mapped = file_.map();
  std::string_view bytes = mapped.bytes();
  std::string bad;
  int64_t last = 0;
  auto scan = LogFile::scan(bytes, [&](const LogEntry& e, size_t body_at) {
    if (!bad.empty()) return;
    if (e.seq <= 0 || e.seq > kMaxSeq) {
      bad = "entry " + std::to_string(e.seq) + " is not a sequence number kubetrail writes";
      return;
    }
    switch (e.kind) {
      case LogKind::kOutboxRow:
      case LogKind::kOutboxDone: {
        last = std::max(last, e.seq);
        if (rows_.count(e.seq)) {
          bad = "row " + std::to_string(e.seq) + " is written twice";
          return;
        }
        uint16_t h = handler_index(e.resource);
        uint64_t hash = hash_of(e.key, e.resource);
        if (find(e.key, h, hash)) return;  // a second row for a known id is never handed on
        Slot s;
        s.handler = h;
        s.hash = hash;
        s.position = static_cast<int32_t>(std::clamp<int64_t>(e.codec, 0, INT32_MAX));
        std::from_chars(e.resource_version.data(), e.resource_version.data() + e.resource_version.size(), s.created);
        s.id_at = static_cast<size_t>(e.key.data() - bytes.data());
        s.id_size = static_cast<uint32_t>(e.key.size());
        if (e.kind == LogKind::kOutboxDone) {
          s.state = State::delivered;
          s.bytes = row_bytes(e.key.size(), e.resource.size(), 0, 0, 0);
        } else {
          s.route = std::make_unique<std::string>(e.uid);
          s.json_at = body_at;
          s.json_size = static_cast<uint32_t>(e.body.size());
          s.bytes = row_bytes(e.key.size(), e.resource.size(), e.uid.size(), e.body.size(), 0);
          pending_of_[h].insert(e.seq);
          ++pending_count_;
        }
        live_bytes_ += s.bytes;
        known_.emplace(hash, e.seq);
        rows_.emplace(e.seq, std::move(s));
        break;
      }
      case LogKind::kOutboxDelivered: settle(e.seq, State::delivered, {}); break;
      case LogKind::kOutboxDead: settle(e.seq, State::dead, std::string(e.body)); break;
      case LogKind::kOutboxRequeued:
        if (auto it = rows_.find(e.seq); it != rows_.end() && it->second.state == State::dead) forget(it);
        break;
      case LogKind::kOutboxDropped:
        if (auto it = rows_.find(e.seq); it != rows_.end() && it->second.state == State::dead) {
          it->second.state = State::pending;  // settle() moves pending rows only
          pending_of_[it->second.handler].insert(e.seq);
          ++pending_count_;
          settle(e.seq, State::delivered, {});
        }
        break;
      case LogKind::kRoutedThrough: routed_through_ = std::max(routed_through_, e.seq); break;
      default:
        bad = "it holds a checkpoint entry (kind " + std::to_string(static_cast<int>(e.kind)) + "): not an outbox file";
    }
  });
  if (!bad.empty()) throw Error("outbox " + path() + ": " + bad);
  if (!scan.stopped.empty()) {
    // The last write was cut short by a crash (or the file was damaged):
    // nobody was told it happened - rows added are still in the journal or
    // owed by the handler before in the chain, marks are still pending.
    spdlog::warn("outbox {}: {}; dropped from there on ({} bytes; what it held is delivered again)", path(),
                 scan.stopped, bytes.size() - scan.end);
    file_.truncate(scan.end);
  }
  next_seq_ = std::max(next_seq_, last + 1);  // never reused within a run: workers page by seq
}

void OutboxLog::settle(int64_t seq, State to, std::string reason) {
  auto it = rows_.find(seq);
  if (it == rows_.end() || it->second.state != State::pending) return;
  Slot& s = it->second;
  pending_of_[s.handler].erase(seq);
  --pending_count_;
  live_bytes_ -= s.bytes;
  if (to == State::delivered) {
    s.state = State::delivered;
    s.route.reset();
    s.json_size = 0;
    s.bytes = row_bytes(s.id_size, handlers_[s.handler].size(), 0, 0, 0);
  } else {
    s.state = State::dead;
    s.bytes = row_bytes(s.id_size, handlers_[s.handler].size(), s.route ? s.route->size() : 0, s.json_size,
                        std::max<size_t>(reason.size(), 1));
    s.reason = std::make_unique<std::string>(std::move(reason));
  }
  live_bytes_ += s.bytes;
}

std::vector<int64_t> OutboxLog::write(const std::vector<Row>& rows, const std::vector<int64_t>& delivered,
                                      const std::vector<std::pair<int64_t, std::string>>& dead, int64_t routed_through,
                                      int64_t& settled) {
  settled = 0;
  std::vector<int64_t> seqs(rows.size(), 0);
  if (refuse_)
    for (const Row& r : rows)
      if (refuse_(r.id, r.handler))
        throw Error("outbox " + path() + ": the row for " + std::string(r.id) + " was refused (a test's fault)");
  // Encode first, change nothing: should the write fail, memory is as the
  // file is.
  struct Added {
    size_t index;  // in rows
    uint16_t handler;
    uint64_t hash;
    size_t id_at, body_at;  // in the payload
  };
  std::vector<Added> added;
  payload_.clear();
  const int64_t now = now_seconds();
  const std::string created = std::to_string(now);
  int64_t seq = next_seq_;
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    uint16_t h = handler_index(r.handler);
    uint64_t hash = hash_of(r.id, r.handler);
    if (find(r.id, h, hash)) continue;
    bool twice = std::any_of(added.begin(), added.end(), [&](const Added& a) {
      return a.hash == hash && a.handler == h && rows[a.index].id == r.id;
    });
    if (twice) continue;
    size_t id_at = 0;
    size_t body_at = LogFile::encode(
        payload_, {LogKind::kOutboxRow, seq, r.handler, r.id, r.route, created, r.json, r.position}, &id_at);
    added.push_back({i, h, hash, id_at, body_at});
    seqs[i] = seq++;
  }
  for (int64_t s : delivered)
    if (auto it = rows_.find(s); it != rows_.end() && it->second.state == State::pending)
      LogFile::encode(payload_, {LogKind::kOutboxDelivered, s});
  for (const auto& [s, reason] : dead)
    if (auto it = rows_.find(s); it != rows_.end() && it->second.state == State::pending)
      LogFile::encode(payload_, {LogKind::kOutboxDead, s, {}, {}, {}, {}, reason});
  const bool routes = routed_through > routed_through_;
  if (routes) LogFile::encode(payload_, {LogKind::kRoutedThrough, routed_through});
  if (payload_.empty()) return seqs;
  const size_t base = file_.append(payload_);  // throws, the file cut back, when it cannot
  // Durable: now memory follows.
  for (const Added& a : added) {
    const Row& r = rows[a.index];
    Slot s;
    s.handler = a.handler;
    s.hash = a.hash;
    s.position = r.position;
    s.created = now;
    s.id_at = base + a.id_at;
    s.id_size = static_cast<uint32_t>(r.id.size());
    s.route = std::make_unique<std::string>(r.route);
    s.json_at = base + a.body_at;
    s.json_size = static_cast<uint32_t>(r.json.size());
    s.bytes = row_bytes(r.id.size(), r.handler.size(), r.route.size(), r.json.size(), 0);
    live_bytes_ += s.bytes;
    int64_t row_seq = seqs[a.index];
    known_.emplace(a.hash, row_seq);
    pending_of_[a.handler].insert(row_seq);
    ++pending_count_;
    rows_.emplace(row_seq, std::move(s));
  }
  next_seq_ = seq;
  const int64_t before = pending_count_;
  for (int64_t s : delivered) settle(s, State::delivered, {});
  for (const auto& [s, reason] : dead) settle(s, State::dead, reason);
  settled = before - pending_count_;
  if (routes) routed_through_ = routed_through;
  // Delivered rows' JSON is garbage: rewrite once there is much of it (what
  // was written above is durable either way, so a failure here is logged,
  // not thrown - the caller's write succeeded).
  const uint64_t garbage = file_.size() - std::min<uint64_t>(file_.size(), live_bytes_);
  if (garbage > std::max<uint64_t>(rewrite_bytes_, live_bytes_)) {
    try {
      rewrite();
    } catch (const Error& e) {
      spdlog::warn("outbox {}: cannot be rewritten ({}); it keeps growing until it can", path(), e.what());
    }
  }
  return seqs;
}

std::vector<OutboxLog::Entry> OutboxLog::pending(const std::string& handler, int64_t after, size_t limit) const {
  std::vector<Entry> out;
  auto h = handler_of_.find(handler);
  if (h == handler_of_.end()) return out;
  const auto& seqs = pending_of_[h->second];
  for (auto it = seqs.upper_bound(after); it != seqs.end() && out.size() < limit; ++it) {
    const Slot& s = rows_.at(*it);
    Entry e;
    e.seq = *it;
    e.handler = handler;
    e.route = s.route ? *s.route : std::string();
    e.position = s.position;
    std::string why = file_.read(s.id_at, s.id_size, e.id);
    if (why.empty()) why = file_.read(s.json_at, s.json_size, e.json);
    if (!why.empty()) {
      // Handed on all the same: its JSON does not parse, and the worker
      // makes it a dead letter saying so (nothing is skipped silently).
      spdlog::warn("outbox {}: row {} cannot be read back: {}", path(), *it, why);
      e.json.clear();
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<OutboxLog::DeadLetter> OutboxLog::dead_letters() const {
  std::vector<DeadLetter> out;
  for (const auto& [seq, s] : rows_)
    if (s.state == State::dead)
      out.push_back({seq, id_of(s), handlers_[s.handler], s.reason ? *s.reason : "", s.created});
  return out;
}

std::string OutboxLog::json_of(int64_t seq) const {
  auto it = rows_.find(seq);
  std::string json;
  if (it == rows_.end() || it->second.state == State::delivered) return json;
  if (!file_.read(it->second.json_at, it->second.json_size, json).empty()) json.clear();
  return json;
}

int64_t OutboxLog::redeliver(int64_t seq) {
  auto it = rows_.find(seq);
  if (it == rows_.end() || it->second.state != State::dead) return 0;
  const Slot& old = it->second;
  std::string id = id_of(old), json = json_of(seq);
  if (json.empty()) throw Error("outbox " + path() + ": dead letter " + std::to_string(seq) + " cannot be read back");
  const std::string handler = handlers_[old.handler], route = old.route ? *old.route : std::string();
  const int position = old.position;
  payload_.clear();
  LogFile::encode(payload_, {LogKind::kOutboxRequeued, seq});
  const int64_t now = now_seconds();
  const int64_t new_seq = next_seq_;
  size_t id_at = 0;
  size_t body_at = LogFile::encode(
      payload_, {LogKind::kOutboxRow, new_seq, handler, id, route, std::to_string(now), json, position}, &id_at);
  const size_t base = file_.append(payload_);  // throws, the file cut back, when it cannot
  uint16_t h = old.handler;
  uint64_t hash = old.hash;
  forget(it);
  Slot s;
  s.handler = h;
  s.hash = hash;
  s.position = position;
  s.created = now;
  s.id_at = base + id_at;
  s.id_size = static_cast<uint32_t>(id.size());
  s.route = std::make_unique<std::string>(route);
  s.json_at = base + body_at;
  s.json_size = static_cast<uint32_t>(json.size());
  s.bytes = row_bytes(id.size(), handler.size(), route.size(), json.size(), 0);
  live_bytes_ += s.bytes;
  known_.emplace(hash, new_seq);
  pending_of_[h].insert(new_seq);
  ++pending_count_;
  rows_.emplace(new_seq, std::move(s));
  next_seq_ = new_seq + 1;
  return new_seq;
}

bool OutboxLog::drop(int64_t seq) {
  auto it = rows_.find(seq);
  if (it == rows_.end() || it->second.state != State::dead) return false;
  payload_.clear();
  LogFile::encode(payload_, {LogKind::kOutboxDropped, seq});
  file_.append(payload_);
  it->second.state = State::pending;  // settle() moves pending rows only
  pending_of_[it->second.handler].insert(seq);
  ++pending_count_;
  settle(seq, State::delivered, {});
  return true;
}

std::map<int64_t, OutboxLog::Slot>::iterator OutboxLog::forget(std::map<int64_t, Slot>::iterator it) {
  auto [from, to] = known_.equal_range(it->second.hash);
  for (auto k = from; k != to; ++k)
    if (k->second == it->first) {
      known_.erase(k);
      break;
    }
  live_bytes_ -= it->second.bytes;
  return rows_.erase(it);
}

OutboxLog::Compaction OutboxLog::compact(int64_t max_age_s, uint64_t max_bytes, int64_t now) {
  Compaction c;
  for (auto it = rows_.begin(); it != rows_.end();) {
    if (it->second.state != State::pending && it->second.created < now - max_age_s) {
      it = forget(it);
      ++c.removed_by_age;
    } else {
      ++it;
    }
  }
  // Over the cap: the oldest delivered rows go first (they only remember
  // ids), then the oldest dead letters. Pending rows never: they are
  // changes not yet delivered, and dropping them would lose them.
  for (State state : {State::delivered, State::dead}) {
    size_t& removed = state == State::delivered ? c.delivered_removed_by_size : c.dead_removed_by_size;
    for (auto it = rows_.begin(); it != rows_.end() && live_bytes_ > max_bytes;) {
      if (it->second.state == state) {
        it = forget(it);
        ++removed;
      } else {
        ++it;
      }
    }
  }
  rewrite();
  c.bytes = live_bytes_;
  return c;
}

// The file with only what is live, written beside it and renamed over it;
// then read back (the offsets the indexes hold are the new file's).
void OutboxLog::rewrite() {
  auto old = file_.map();
  std::string_view bytes = old.bytes();
  const std::string no_reason;
  replace_file(routed_through_, [&](const EncodeRow& put) {
    for (const auto& [seq, s] : rows_)
      put(seq, handlers_[s.handler], bytes.substr(s.id_at, s.id_size), s.route ? *s.route : std::string_view(),
          s.created, bytes.substr(s.json_at, s.json_size), s.position, s.state == State::delivered,
          s.state == State::dead ? (s.reason ? s.reason.get() : &no_reason) : nullptr);
  });
}

void OutboxLog::replace_with(const std::vector<Imported>& rows, int64_t routed_through) {
  replace_file(routed_through, [&](const EncodeRow& put) {
    for (const Imported& r : rows)
      put(r.seq, r.handler, r.id, r.route, r.created, r.json, r.position, r.state == 1,
          r.state == 2 ? &r.reason : nullptr);
  });
}

// Writes the rows `each` hands over (in frames of about kFrameBytes) and
// routed_through into a new file, renames it over the old one, and reads it.
void OutboxLog::replace_file(int64_t routed_through, const std::function<void(const EncodeRow&)>& each) {
  auto w = file_.rewrite();
  std::string payload;
  each([&](int64_t seq, std::string_view handler, std::string_view id, std::string_view route, int64_t created,
           std::string_view json, int position, bool delivered, const std::string* dead_reason) {
    encode_row(payload, seq, handler, id, route, created, json, position, delivered, dead_reason);
    if (payload.size() >= kFrameBytes) {
      w.add(payload);
      payload.clear();
    }
  });
  if (routed_through > 0) LogFile::encode(payload, {LogKind::kRoutedThrough, routed_through});
  if (!payload.empty()) w.add(payload);
  w.commit();
  load();
  routed_through_ = std::max(routed_through_, routed_through);
}

}  // namespace kubetrail::state
