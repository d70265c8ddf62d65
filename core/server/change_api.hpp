// The change API and the timeline page (issue 17), served beside /metrics:
//
//   GET    /api/v1/changes            change sets kept in the history, newest
//                                     first, filtered (since, until, namespace,
//                                     resource, name, actor, path, type),
//                                     paginated (limit, cursor -> nextCursor)
//   GET    /api/v1/changes/histogram  counts per time bucket (buckets=N) of the
//                                     same filter: the overview of a window too
//                                     large to list
//   GET    /api/v1/changes/stream     Server-Sent Events, one per change set as
//                                     it is kept (id: the change set id),
//                                     resumable with Last-Event-ID
//   GET    /api/v1/dead-letters       dead letters (?id=: one change set's,
//                                     with it; &handler= narrows)
//   POST   /api/v1/dead-letters/redeliver?id=  hand back to its handler
//   POST   /api/v1/dead-letters/drop?id=       give up on it
//   GET    /ui                        the timeline page (server/ui/)
//
// The history is read through its own read-only connection (WAL: readers
// never block the daemon's writes). Dead letters go through the daemon
// (the outbox has one writer), by the functions it hands in.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "state/outbox_log.hpp"

namespace httplib {
class Server;
}

namespace kubetrail::server {

struct DeadLetterDesk {
  std::function<std::vector<state::OutboxLog::DeadLetter>()> list;        // oldest first
  std::function<std::string(int64_t seq)> json;                           // its change set, "" if none
  std::function<int64_t(const state::OutboxLog::DeadLetter&)> redeliver;  // its new pending row, 0 if none
  std::function<bool(const state::OutboxLog::DeadLetter&)> drop;
};

struct ApiOptions {
  bool enabled = false;
  std::filesystem::path history;  // "" = no history kept (no state store)
  std::string token;              // "" = none needed (loopback)
  DeadLetterDesk dead_letters;    // empty functions = no outbox
};

// Whether [server] opens the API at `listen`, and with which token: open on
// loopback; elsewhere only with a token (token_env, else the first line of
// token_file); off when api = false. Throws kubetrail::Error naming the key
// when a configured token cannot be read or is empty. `why_off` says why it
// is off, for the log.
ApiOptions api_access(const config::ServerConfig& server, std::string& why_off);

// Whether host (of HOST:PORT, brackets stripped) is a loopback address.
bool is_loopback_host(const std::string& host);

// Tokens compared in time that depends on their lengths only, never on
// where they first differ.
bool same_token(const std::string& given, const std::string& expected);

// The dead-letter answers, for the API and for `kubetrail dead-letters
// --state` alike: status 200 and the JSON body, or an error status and why.
struct DeskAnswer {
  int status = 200;
  std::string body;
};
// {"items":[{id, handler, reason, created[, changeSet]}]}: all, or change
// set `id`'s (with the change set); `handler` ("" = any) narrows.
DeskAnswer dead_letters_list(const DeadLetterDesk& desk, const std::optional<std::string>& id,
                             const std::string& handler);
// Redelivers or drops change set `id`'s dead letters (of `handler`, "" =
// every handler's): {"redelivered"|"dropped":[...]}.
DeskAnswer dead_letters_settle(const DeadLetterDesk& desk, bool redeliver, const std::string& id,
                               const std::string& handler);

// Adds the routes above to `server`. `running` turns false when the server
// stops (a stream ends then).
void add_change_api(httplib::Server& server, ApiOptions options, const std::function<bool()>& running);

}  // namespace kubetrail::server
