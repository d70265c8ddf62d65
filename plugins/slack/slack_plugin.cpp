// slack: posts change sets to Slack as Block Kit messages, through an
// incoming webhook or a bot token (chat.postMessage).
//
// Slack's answers: 2xx and {"ok":true} OK; 429 (Retry-After), 5xx, timeouts
// and "ratelimited"/"internal_error" RETRY; invalid_auth, channel_not_found
// and other 4xx FAIL with Slack's own message. An optional rate limit
// (messages per minute) coalesces the overflow of a batch into one message.
// The webhook URL and token are secrets: read from env or file, never shown.
#include <kubetrail/sdk.hpp>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/plugin_support.hpp"

namespace {

namespace sdk = kubetrail::sdk;
namespace kp = kubetrail_plugins;
using nlohmann::json;

constexpr const char* kSchema = R"schema({
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "slack handler",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "webhook_url_env": {"type": "string", "minLength": 1, "description": "environment variable holding an incoming-webhook URL"},
    "webhook_url_file": {"type": "string", "minLength": 1, "description": "file holding an incoming-webhook URL"},
    "token_env": {"type": "string", "minLength": 1, "description": "environment variable holding a bot token (chat.postMessage)"},
    "token_file": {"type": "string", "minLength": 1, "description": "file holding a bot token"},
    "channel": {"type": "string", "minLength": 1, "description": "channel for chat.postMessage (required with a token)"},
    "api_url": {"type": "string", "pattern": "^https?://", "default": "https://slack.com/api"},
    "rate_per_minute": {"type": "integer", "minimum": 1, "maximum": 10000,
                        "description": "at most this many messages a minute; the overflow of a batch is coalesced"},
    "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 600000, "default": 10000},
    "max_changes": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10,
                    "description": "changes listed per message before \"and K more\""}
  }
})schema";

// Slack's limits (Block Kit reference): header text 150 chars, section text
// 3000 chars.
constexpr size_t kHeaderMax = 150;
constexpr size_t kSectionMax = 3000;

std::string clip(std::string s, size_t max) {
  if (s.size() <= max) return s;
  size_t cut = max - 3;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // keep UTF-8 whole
  return s.substr(0, cut) + "...";
}

// mrkdwn needs &, < and > escaped; backticks would end code spans early.
std::string esc(std::string_view in) {
  std::string out;
  for (char c : in) {
    if (c == '&')
      out += "&amp;";
    else if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '`')
      out += '\'';
    else
      out += c;
  }
  return out;
}

std::string value_text(std::string_view json_text) {
  std::string v(json_text);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
    auto j = json::parse(v, nullptr, false);
    if (j.is_string()) v = j.get<std::string>();
  }
  return clip(v, 120);
}

class Slack : public sdk::Plugin {
 public:
  Slack(std::string_view config_json, sdk::Host host) : sdk::Plugin(host) {
    auto cfg = json::parse(config_json);
    int webhook = cfg.contains("webhook_url_env") + cfg.contains("webhook_url_file");
    int token = cfg.contains("token_env") + cfg.contains("token_file");
    if (webhook + token != 1)
      throw std::runtime_error("set exactly one of webhook_url_env, webhook_url_file, token_env, token_file");
    if (webhook) {
      url_ = kp::read_secret(cfg, "webhook_url");
      if (url_.rfind("https://", 0) != 0 && url_.rfind("http://", 0) != 0)
        throw std::runtime_error("the webhook URL must start with https://");
    } else {
      token_ = kp::read_secret(cfg, "token");
      if (!cfg.contains("channel")) throw std::runtime_error("channel is required with token_env/token_file");
      channel_ = cfg["channel"];
      url_ = cfg.value("api_url", "https://slack.com/api") + "/chat.postMessage";
    }
    timeout_ms_ = cfg.value("timeout_ms", 10000);
    max_changes_ = cfg.value("max_changes", 10);
    if (cfg.contains("rate_per_minute")) {
      rate_per_minute_ = cfg["rate_per_minute"];
      tokens_ = rate_per_minute_;
      refilled_ = std::chrono::steady_clock::now();
    }
    sent_ = host.define_metric(sdk::MetricKind::counter, "slack_messages_total", "messages posted to Slack");
  }

  sdk::Result handle(const sdk::Batch& batch) override {
    size_t n = batch.size();
    size_t budget = take_budget(n);
    if (budget == 0) return sdk::Result::retry("rate_per_minute reached", ms_to_next_token());
    // Within budget: one message per change set. Over it: budget-1 single
    // messages, and one that coalesces the rest.
    size_t singles = budget >= n ? n : budget - 1;
    sdk::Result result;
    result.item_status.assign(n, sdk::Status::ok);
    for (size_t i = 0; i < n;) {
      json msg = i < singles ? message_for(batch[i]) : coalesced(batch, i);
      size_t covered = i < singles ? 1 : n - i;
      auto r = post(msg);
      if (r.status != sdk::Status::ok) {
        for (size_t k = i; k < n; ++k) result.item_status[k] = r.status;
        result.status = r.status;
        result.retry_after_ms = r.retry_after_ms;
        result.message = r.message;
        return result;
      }
      i += covered;
    }
    return result;
  }

 private:
  size_t take_budget(size_t wanted) {
    if (!rate_per_minute_) return wanted;
    auto now = std::chrono::steady_clock::now();
    double elapsed = std::chrono::duration<double>(now - refilled_).count();
    tokens_ = std::min<double>(rate_per_minute_, tokens_ + elapsed * rate_per_minute_ / 60.0);
    refilled_ = now;
    size_t have = static_cast<size_t>(std::floor(tokens_));
    size_t messages = have >= wanted ? wanted : have;
    tokens_ -= static_cast<double>(messages);
    return messages;
  }
  uint32_t ms_to_next_token() const {
    double missing = 1.0 - (tokens_ - std::floor(tokens_));
    return static_cast<uint32_t>(std::ceil(missing * 60000.0 / rate_per_minute_));
  }

  static const char* color(sdk::ChangeType t) {
    return t == sdk::ChangeType::added      ? "#2eb886"
           : t == sdk::ChangeType::deleted  ? "#a30200"
           : t == sdk::ChangeType::snapshot ? "#439fe0"
                                            : "#daa038";
  }

  static std::string title(const sdk::ChangeSet& cs) {
    std::string who =
        std::string(cs.kind()) + " " +
        (cs.object_namespace().empty() ? std::string(cs.name())
                                       : std::string(cs.object_namespace()) + "/" + std::string(cs.name()));
    if (cs.type() == sdk::ChangeType::added) return "New " + who;
    if (cs.type() == sdk::ChangeType::deleted) return who + " deleted";
    if (cs.type() == sdk::ChangeType::snapshot)  // inventory: no change, the object as it is
      return who + " (inventory " + std::to_string(cs.snapshot_index()) + " of " + std::to_string(cs.snapshot_total()) +
             ")";
    return who + " changed";
  }

  json message_for(const sdk::ChangeSet& cs) const {
    auto full = json::parse(cs.json());
    std::string context = "cluster *" + esc(cs.cluster()) + "*";
    if (full.contains("actor")) context = "by *" + esc(full["actor"].value("manager", "?")) + "* · " + context;
    context += " · " + esc(cs.observed_at());
    json blocks = json::array();
    blocks.push_back(
        {{"type", "header"}, {"text", {{"type", "plain_text"}, {"text", clip(esc(title(cs)), kHeaderMax)}}}});
    blocks.push_back({{"type", "context"}, {"elements", json::array({{{"type", "mrkdwn"}, {"text", context}}})}});
    blocks.push_back(
        {{"type", "section"}, {"text", {{"type", "mrkdwn"}, {"text", clip(esc(cs.summary()), kSectionMax)}}}});
    if (cs.change_count() > 0) {
      std::string list;
      size_t shown = 0;
      for (size_t i = 0; i < cs.change_count() && shown < max_changes_; ++i, ++shown) {
        auto c = cs.change(i);
        std::string line = "• `" + esc(c.path()) + "`: ";
        if (c.op() == sdk::FieldOp::add)
          line += "added `" + esc(value_text(c.new_json())) + "`";
        else if (c.op() == sdk::FieldOp::remove)
          line += "removed (was `" + esc(value_text(c.old_json())) + "`)";
        else
          line += "`" + esc(value_text(c.old_json())) + "` → `" + esc(value_text(c.new_json())) + "`";
        if (list.size() + line.size() + 40 > kSectionMax) break;  // room for "and K more"
        list += line + "\n";
      }
      if (shown < cs.change_count()) list += "_and " + std::to_string(cs.change_count() - shown) + " more_";
      blocks.push_back({{"type", "section"}, {"text", {{"type", "mrkdwn"}, {"text", list}}}});
    }
    json msg;
    // The notification text is what Slack shows first and parses for
    // <!channel> and <url|label>: escaped like every string from an object.
    msg["text"] = clip(std::string(cs.type_name()) + ": " + esc(cs.summary()), kSectionMax);
    msg["attachments"] = json::array({{{"color", color(cs.type())}, {"blocks", blocks}}});
    return msg;
  }

  json coalesced(const sdk::Batch& batch, size_t from) const {
    size_t n = batch.size() - from;
    std::string list;
    size_t shown = 0;
    for (size_t i = from; i < batch.size(); ++i) {
      std::string line = "• " + std::string(batch[i].type_name()) + " " + esc(batch[i].summary()) + "\n";
      if (list.size() + line.size() + 40 > kSectionMax) break;
      list += line;
      ++shown;
    }
    if (shown < n) list += "_and " + std::to_string(n - shown) + " more_";
    json blocks = json::array();
    blocks.push_back(
        {{"type", "header"},
         {"text", {{"type", "plain_text"}, {"text", std::to_string(n) + " changes (rate limit reached)"}}}});
    blocks.push_back({{"type", "section"}, {"text", {{"type", "mrkdwn"}, {"text", list}}}});
    json msg;
    msg["text"] = std::to_string(n) + " changes in cluster " + esc(batch[from].cluster());
    msg["attachments"] = json::array({{{"color", "#439fe0"}, {"blocks", blocks}}});
    return msg;
  }

  sdk::Result post(json msg) {
    kp::HttpRequest req;
    req.url = url_;
    req.timeout_ms = timeout_ms_;
    req.headers.push_back("Content-Type: application/json; charset=utf-8");
    if (!token_.empty()) {
      msg["channel"] = channel_;
      req.headers.push_back("Authorization: Bearer " + token_);
    }
    req.body = msg.dump();
    auto resp = kp::http_post(req);
    host().record(sent_, 1);
    auto v = kp::verdict(resp);
    if (v == kp::HttpVerdict::retry)
      return sdk::Result::retry("Slack: " + kp::describe(resp), kp::retry_after_ms(resp));
    if (v == kp::HttpVerdict::fail) return sdk::Result::fail("Slack: " + kp::describe(resp));
    if (!token_.empty()) {  // chat.postMessage answers 200 with {"ok": false, "error": ...}
      auto j = json::parse(resp.body, nullptr, false);
      if (!j.is_object()) return sdk::Result::retry("Slack: unreadable answer: " + kp::first_line(resp.body));
      if (!j.value("ok", false)) {
        std::string error = j.value("error", "unknown_error");
        if (error == "ratelimited" || error == "internal_error" || error == "fatal_error" ||
            error == "service_unavailable" || error == "request_timeout")
          return sdk::Result::retry("Slack: " + error, kp::retry_after_ms(resp));
        return sdk::Result::fail("Slack: " + error);
      }
    }
    return sdk::Result::ok();
  }

  std::string url_, token_, channel_;
  long timeout_ms_ = 10000;
  size_t max_changes_ = 10;
  int rate_per_minute_ = 0;
  double tokens_ = 0;
  std::chrono::steady_clock::time_point refilled_;
  int32_t sent_ = -1;
};

}  // namespace

KUBETRAIL_PLUGIN_EX(Slack, "slack", "0.1.0", "posts change sets to Slack (incoming webhook or chat.postMessage)",
                    kSchema, KUBETRAIL_CAP_BATCH, KUBETRAIL_THREADING_SERIAL)
