// `kubetrail dead-letters list|show|redeliver|drop`: repairing a handler
// outage without SQL. Over a running kubetrail's API (--server; the outbox
// has one writer, the daemon, which hands a redelivered change set straight
// to its handler's worker), or over a state store no kubetrail has open
// (--state: the next `run` delivers what was handed back).
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/api_client.hpp"
#include "cli/cli.hpp"
#include "cli/common.hpp"
#include "common/error.hpp"
#include "common/json_depth.hpp"
#include "model/change_set.hpp"
#include "server/change_api.hpp"
#include "state/state_store.hpp"

namespace kubetrail::cli {

namespace {

// One request: (action, id) -> the API's JSON body; an error status is a
// kubetrail::Error saying why.
using Ask = std::function<std::string(const std::string& action, const std::string& id)>;

Ask over_server(const Args& args) {
  auto client = std::make_shared<ApiClient>(args.get("--server"), api_token(args.get("--token-file")));
  const std::string handler = args.has("--handler") ? "&handler=" + ApiClient::escape(args.get("--handler")) : "";
  return [client, handler](const std::string& action, const std::string& id) {
    if (action == "list") return client->get("/api/v1/dead-letters?" + handler.substr(handler.empty() ? 0 : 1));
    if (action == "show") return client->get("/api/v1/dead-letters?id=" + ApiClient::escape(id) + handler);
    return client->post("/api/v1/dead-letters/" + action + "?id=" + ApiClient::escape(id) + handler);
  };
}

Ask over_state(const Args& args) {
  std::string path = args.get("--state");
  if (path.empty()) path = load_config(args).state.path;
  if (path.empty()) throw Error("--state PATH or --server URL: where the dead letters are ([state] path is \"\")");
  std::shared_ptr<state::StateStore> store;
  try {
    store = state::StateStore::open(path, false);
  } catch (const Error& e) {
    throw Error(std::string(e.what()) +
                "\n(a running kubetrail holds its state store: ask it with --server, through kubectl port-forward)");
  }
  server::DeadLetterDesk desk;
  desk.list = [store] { return store->dead_letters(); };
  desk.json = [store](int64_t seq) { return store->dead_letter_json(seq); };
  desk.redeliver = [store](const state::OutboxLog::DeadLetter& d) { return store->redeliver_dead_letter(d.seq); };
  desk.drop = [store](const state::OutboxLog::DeadLetter& d) { return store->drop_dead_letter(d.seq); };
  const std::string handler = args.get("--handler");
  return [desk, handler](const std::string& action, const std::string& id) {
    auto a = action == "list"   ? server::dead_letters_list(desk, std::nullopt, handler)
             : action == "show" ? server::dead_letters_list(desk, id, handler)
                                : server::dead_letters_settle(desk, action == "redeliver", id, handler);
    if (a.status != 200) throw Error(a.body);
    return a.body;
  };
}

std::string when(int64_t unix_s) {
  char buf[32];
  std::time_t t = unix_s;
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// An answer to print as text: bounded before nlohmann parses it (dump()
// and copies recurse once a level).
nlohmann::json parsed_answer(const std::string& body) {
  if (json_nested_deeper_than(body)) throw Error("the server's answer is " + nested_deeper_than());
  return nlohmann::json::parse(body);
}

}  // namespace

int run_dead_letters(const Args& args) {
  const std::string action = args.positional.at(0);
  std::vector<std::string> ids(args.positional.begin() + 1, args.positional.end());
  if (action != "list" && action != "show" && action != "redeliver" && action != "drop")
    throw Error("dead-letters: \"" + action + "\" is not list, show, redeliver or drop");
  if (action == "list" && !ids.empty()) throw Error("dead-letters list takes no ID (show ID does)");
  if (action != "list" && ids.empty()) throw Error("dead-letters " + action + ": which change set? (an ID from list)");
  Ask ask = args.has("--server") ? over_server(args) : over_state(args);
  const bool json = args.get("--output", "text") == "json";
  if (action == "list") {
    auto body = ask("list", "");
    if (json) {
      std::cout << body;
      return 0;
    }
    auto items = parsed_answer(body).at("items");
    if (items.empty()) std::cout << "no dead letters\n";
    for (const auto& d : items)
      std::cout << d.at("id").get<std::string>() << "  handler " << d.at("handler").get<std::string>() << "  since "
                << when(d.at("created").get<int64_t>()) << "\n    " << d.at("reason").get<std::string>() << "\n";
    return 0;
  }
  int status = 0;
  for (const auto& id : ids) {
    try {
      auto body = ask(action, id);
      if (json) {
        std::cout << body;
        continue;
      }
      auto answer = parsed_answer(body);
      if (action == "show") {
        for (const auto& d : answer.at("items")) {
          std::cout << d.at("id").get<std::string>() << "\n  handler: " << d.at("handler").get<std::string>()
                    << "\n  since:   " << when(d.at("created").get<int64_t>())
                    << "\n  reason:  " << d.at("reason").get<std::string>() << "\n";
          if (d.contains("changeSet")) std::cout << "  change set:\n" << d["changeSet"].dump(2) << "\n";
        }
        continue;
      }
      const char* done = action == "redeliver" ? "redelivered" : "dropped";
      const auto& settled = answer.at(done);
      if (settled.empty()) std::cout << id << ": settled meanwhile, nothing to do\n";
      for (const auto& d : settled)
        std::cout << id << ": " << done << (action == "redeliver" ? " to" : " for") << " handler "
                  << d.at("handler").get<std::string>() << "\n";
    } catch (const Error& e) {  // the other ids still get their turn
      std::cerr << "kubetrail: " << id << ": " << e.what() << "\n";
      status = 1;
    }
  }
  return status;
}

}  // namespace kubetrail::cli
