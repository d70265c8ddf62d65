// nats: publishes each change set to a NATS JetStream stream, so that many
// consumers (an audit store, a SIEM, a CMDB) read one durable log of every
// cluster's changes instead of kubetrail calling each of them.
//
// Exactly once into the stream: each message carries the change-set id as
// Nats-Msg-Id, and JetStream drops a message whose id it has seen within the
// stream's duplicate window - so a change set kubetrail delivers again (a
// publish whose ack was lost, a restart before the delivery was recorded)
// is stored once. A change set counts as delivered only when the stream's
// publish ack says it is stored (on every replica the stream asks for).
//
// In order per object: change sets are published one at a time, each after
// the ack of the one before; when one fails, it and everything after it in
// the batch take its status, so a retry never lands a change set after a
// later one of the same object.
//
// Status mapping: ack (or duplicate ack) OK; no ack in time, no responders
// (no stream leader yet, or no stream listening), connection lost: RETRY
// with the error; a message the stream refuses for good (too large, wrong
// stream): FAIL. Server URLs and credentials never appear in messages.
//
// Built against the SDK only, as any third-party plugin would be.
#include <nats/nats.h>
#include <kubetrail/sdk.hpp>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/plugin_support.hpp"

namespace {

namespace sdk = kubetrail::sdk;
namespace kp = kubetrail_plugins;

constexpr const char* kSchema = R"schema({
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "nats handler",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "servers": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^(nats|tls)://"},
                "default": ["nats://127.0.0.1:4222"],
                "description": "server URLs; every node of the cluster, so that a node down is not a sink down"},
    "servers_env": {"type": "string", "minLength": 1,
                    "description": "environment variable holding comma-separated server URLs (when they hold credentials)"},
    "subject": {"type": "string", "minLength": 1, "default": "kubetrail.{cluster}.{resource}.{namespace}",
                "description": "subject template: {cluster} {resource} {group} {version} {kind} {namespace} {name} {type}; a value's '.', '*', '>' and whitespace become '_', an empty one '_'"},
    "stream": {"type": "object", "additionalProperties": false, "required": ["name"],
               "description": "the stream the subjects belong to: publishes are acked by it alone; created when missing if create is true",
               "properties": {
                 "name": {"type": "string", "pattern": "^[^.*> \\t]+$"},
                 "create": {"type": "boolean", "default": false},
                 "subjects": {"type": "array", "items": {"type": "string", "minLength": 1}, "default": ["kubetrail.>"]},
                 "replicas": {"type": "integer", "minimum": 1, "maximum": 5, "default": 1},
                 "retention": {"enum": ["limits", "interest", "workqueue"], "default": "limits"},
                 "storage": {"enum": ["file", "memory"], "default": "file"},
                 "max_age": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h|d)$", "description": "e.g. 720h; absent: no limit"},
                 "max_bytes": {"type": "integer", "minimum": 1},
                 "duplicate_window": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h|d)$", "default": "2m",
                                      "description": "how long JetStream remembers an id to drop a redelivery"}
               }},
    "ack_timeout_ms": {"type": "integer", "minimum": 100, "maximum": 600000, "default": 5000,
                       "description": "how long to wait for the stream's publish ack before RETRY"},
    "token_env": {"type": "string", "minLength": 1},
    "token_file": {"type": "string", "minLength": 1},
    "user_env": {"type": "string", "minLength": 1},
    "password_env": {"type": "string", "minLength": 1},
    "credentials_file": {"type": "string", "minLength": 1, "description": "a .creds file (user JWT and NKey seed)"},
    "nkey": {"type": "string", "minLength": 1, "description": "the NKey public key, with nkey_seed_file"},
    "nkey_seed_file": {"type": "string", "minLength": 1},
    "tls": {"type": "boolean", "default": false, "description": "require TLS (implied by tls:// URLs and the files below)"},
    "ca_file": {"type": "string", "minLength": 1},
    "cert_file": {"type": "string", "minLength": 1},
    "key_file": {"type": "string", "minLength": 1},
    "insecure_skip_verify": {"type": "boolean", "default": false}
  }
})schema";

// "720h" -> nanoseconds (JetStream's unit for ages and windows).
int64_t duration_ns(const std::string& text, const char* key) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  const std::string unit = text.substr(digits);
  int64_t per = unit == "ms"  ? 1'000'000LL
                : unit == "s" ? 1'000'000'000LL
                : unit == "m" ? 60'000'000'000LL
                : unit == "h" ? 3'600'000'000'000LL
                : unit == "d" ? 86'400'000'000'000LL
                              : 0;
  if (digits == 0 || digits > 9 || per == 0)
    throw std::runtime_error(std::string(key) + ": \"" + text + "\" is not a duration like 90s, 2m, 720h or 30d");
  return std::stoll(text.substr(0, digits)) * per;
}

// A value as one subject token: no separators or wildcards, never empty.
std::string token(std::string_view v) {
  if (v.empty()) return "_";
  std::string out(v);
  for (char& c : out)
    if (c == '.' || c == '*' || c == '>' || c == ' ' || c == '\t' || c == '\r' || c == '\n') c = '_';
  return out;
}

// The subject template, split once into literal text and placeholders.
class SubjectTemplate {
 public:
  explicit SubjectTemplate(const std::string& text) {
    size_t i = 0;
    while (i < text.size()) {
      size_t open = text.find('{', i);
      if (open == std::string::npos) {
        parts_.push_back({text.substr(i), Field::literal});
        break;
      }
      size_t close = text.find('}', open);
      if (close == std::string::npos)
        throw std::runtime_error("subject: '{' at byte " + std::to_string(open) + " is not closed");
      if (open > i) parts_.push_back({text.substr(i, open - i), Field::literal});
      parts_.push_back({"", field_of(text.substr(open + 1, close - open - 1))});
      i = close + 1;
    }
  }
  std::string render(const sdk::ChangeSet& cs) const {
    std::string out;
    for (const auto& p : parts_) {
      switch (p.field) {
        case Field::literal: out += p.text; break;
        case Field::cluster: out += token(cs.cluster()); break;
        case Field::resource: out += token(cs.resource()); break;
        case Field::group: out += token(cs.group()); break;
        case Field::version: out += token(cs.version()); break;
        case Field::kind: out += token(cs.kind()); break;
        case Field::ns: out += token(cs.object_namespace()); break;
        case Field::name: out += token(cs.name()); break;
        case Field::type: out += token(cs.type_name()); break;
      }
    }
    return out;
  }

 private:
  enum class Field { literal, cluster, resource, group, version, kind, ns, name, type };
  struct Part {
    std::string text;
    Field field;
  };
  static Field field_of(const std::string& name) {
    if (name == "cluster") return Field::cluster;
    if (name == "resource") return Field::resource;
    if (name == "group") return Field::group;
    if (name == "version") return Field::version;
    if (name == "kind") return Field::kind;
    if (name == "namespace") return Field::ns;
    if (name == "name") return Field::name;
    if (name == "type") return Field::type;
    throw std::runtime_error("subject: unknown placeholder {" + name +
                             "} (known: cluster, resource, group, version, kind, namespace, name, type)");
  }
  std::vector<Part> parts_;
};

std::string status_text(natsStatus s) {
  const char* last = nats_GetLastError(nullptr);
  std::string out = natsStatus_GetText(s);
  if (last && *last && out.find(last) == std::string::npos) out.append(": ").append(last);
  return out;
}

void check(natsStatus s, const char* what) {
  if (s != NATS_OK) throw std::runtime_error(std::string(what) + ": " + status_text(s));
}

// Stream refusals no retry can cure; any other JetStream error (no leader,
// insufficient resources while a node is down) is transient.
bool permanent(jsErrCode e) {
  return e == JSStreamMessageExceedsMaximumErr || e == JSStreamNotMatchErr || e == JSStreamSealedErr ||
         e == JSStreamSubjectOverlapErr;
}

class Nats : public sdk::Plugin {
 public:
  Nats(std::string_view config_json, sdk::Host host) : sdk::Plugin(host) {
    auto cfg = nlohmann::json::parse(config_json);
    subject_ = SubjectTemplate(cfg.value("subject", "kubetrail.{cluster}.{resource}.{namespace}"));
    ack_timeout_ms_ = cfg.value("ack_timeout_ms", 5000);
    std::vector<std::string> servers;
    if (cfg.contains("servers") && cfg.contains("servers_env"))
      throw std::runtime_error("set one of servers and servers_env");
    if (cfg.contains("servers_env")) {
      std::string list = kp::read_secret(cfg, "servers");
      for (size_t i = 0; i <= list.size();) {
        size_t comma = std::min(list.find(',', i), list.size());
        if (comma > i) servers.push_back(list.substr(i, comma - i));
        i = comma + 1;
      }
      if (servers.empty()) throw std::runtime_error("servers_env: no server URL in the variable");
    } else {
      servers = cfg.value("servers", std::vector<std::string>{"nats://127.0.0.1:4222"});
    }

    natsOptions* opts = nullptr;
    check(natsOptions_Create(&opts), "nats options");
    opts_.reset(opts);
    std::vector<const char*> urls;
    for (const auto& s : servers) urls.push_back(s.c_str());
    // The URLs are not repeated in the message: they may carry credentials.
    if (natsOptions_SetServers(opts_.get(), urls.data(), static_cast<int>(urls.size())) != NATS_OK)
      throw std::runtime_error("servers: a URL is not a NATS URL (nats://HOST:PORT or tls://HOST:PORT)");
    check(natsOptions_SetName(opts_.get(), "kubetrail"), "nats options");
    // A sink that is down at start, or a node that goes away, is waited
    // for: publishes answer RETRY until a node takes them.
    check(natsOptions_SetMaxReconnect(opts_.get(), -1), "nats options");
    check(natsOptions_SetReconnectWait(opts_.get(), 250), "nats options");
    check(natsOptions_SetRetryOnFailedConnect(opts_.get(), true, &Nats::connected, nullptr), "nats options");
    configure_auth(cfg);
    configure_tls(cfg);

    natsConnection* conn = nullptr;
    natsStatus s = natsConnection_Connect(&conn, opts_.get());
    conn_.reset(conn);
    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) throw std::runtime_error("connect: " + status_text(s));
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = ack_timeout_ms_;
    jsCtx* js = nullptr;
    check(natsConnection_JetStream(&js, conn_.get(), &jo), "jetstream context");
    js_.reset(js);

    if (cfg.contains("stream")) {
      const auto& st = cfg["stream"];
      stream_ = st.at("name").get<std::string>();
      if (st.value("create", false)) ensure_stream(st);
    }
    published_ =
        host.define_metric(sdk::MetricKind::counter, "nats_published_total", "change sets the stream acked as stored");
    duplicates_ = host.define_metric(sdk::MetricKind::counter, "nats_duplicates_total",
                                     "change sets the stream had already (dropped by Nats-Msg-Id)");
  }

  sdk::Result handle(const sdk::Batch& batch) override {
    sdk::Result result;
    result.item_status.assign(batch.size(), sdk::Status::ok);
    size_t i = 0;
    for (const auto& cs : batch) {
      sdk::Result r = publish(cs);
      if (r.status != sdk::Status::ok) {
        // This one and all after it keep their order for the next attempt.
        for (size_t j = i; j < batch.size(); ++j) result.item_status[j] = r.status;
        result.status = r.status;
        result.message = std::move(r.message);
        result.retry_after_ms = r.retry_after_ms;
        break;
      }
      ++i;
    }
    return result;
  }

 private:
  static void connected(natsConnection*, void*) {}  // its presence makes the first connect asynchronous

  void configure_auth(const nlohmann::json& cfg) {
    int methods = cfg.contains("token_env") + cfg.contains("token_file") + cfg.contains("user_env") +
                  cfg.contains("credentials_file") + cfg.contains("nkey_seed_file");
    if (methods > 1)
      throw std::runtime_error("set one of token_env, token_file, user_env, credentials_file and nkey_seed_file");
    if (std::string token = kp::read_secret(cfg, "token"); !token.empty())
      check(natsOptions_SetToken(opts_.get(), token.c_str()), "token");
    if (cfg.contains("user_env") != cfg.contains("password_env"))
      throw std::runtime_error("user_env and password_env go together");
    if (cfg.contains("user_env")) {
      std::string user = kp::read_secret(cfg, "user"), password = kp::read_secret(cfg, "password");
      check(natsOptions_SetUserInfo(opts_.get(), user.c_str(), password.c_str()), "user_env");
    }
    if (cfg.contains("credentials_file")) {
      std::string file = cfg["credentials_file"].get<std::string>();
      if (natsOptions_SetUserCredentialsFromFiles(opts_.get(), file.c_str(), nullptr) != NATS_OK)
        throw std::runtime_error("credentials_file: cannot use " + file);
    }
    if (cfg.contains("nkey_seed_file") != cfg.contains("nkey"))
      throw std::runtime_error("nkey and nkey_seed_file go together");
    if (cfg.contains("nkey_seed_file")) {
      std::string key = cfg["nkey"].get<std::string>(), file = cfg["nkey_seed_file"].get<std::string>();
      if (natsOptions_SetNKeyFromSeed(opts_.get(), key.c_str(), file.c_str()) != NATS_OK)
        throw std::runtime_error("nkey_seed_file: cannot use " + file);
    }
  }

  void configure_tls(const nlohmann::json& cfg) {
    bool tls = cfg.value("tls", false) || cfg.contains("ca_file") || cfg.contains("cert_file");
    if (cfg.contains("cert_file") != cfg.contains("key_file"))
      throw std::runtime_error("cert_file and key_file go together");
    if (!tls) return;
    check(natsOptions_SetSecure(opts_.get(), true), "tls");
    if (cfg.contains("ca_file")) {
      std::string f = cfg["ca_file"].get<std::string>();
      if (natsOptions_LoadCATrustedCertificates(opts_.get(), f.c_str()) != NATS_OK)
        throw std::runtime_error("ca_file: cannot load " + f + ": " + status_text(NATS_SSL_ERROR));
    }
    if (cfg.contains("cert_file")) {
      std::string c = cfg["cert_file"].get<std::string>(), k = cfg["key_file"].get<std::string>();
      if (natsOptions_LoadCertificatesChain(opts_.get(), c.c_str(), k.c_str()) != NATS_OK)
        throw std::runtime_error("cert_file/key_file: cannot load " + c + " and " + k);
    }
    if (cfg.value("insecure_skip_verify", false)) check(natsOptions_SkipServerVerification(opts_.get(), true), "tls");
  }

  // Creates the stream when it is missing; an existing one is left as it
  // is (its owner may have tuned it). Not reachable yet: RETRY, so that
  // the host creates the handler again with its backoff.
  void ensure_stream(const nlohmann::json& st) {
    jsStreamInfo* info = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_GetStreamInfo(&info, js_.get(), stream_.c_str(), nullptr, &jerr);
    if (s == NATS_OK) {
      jsStreamInfo_Destroy(info);
      return;
    }
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr)
      throw sdk::RetryableError("stream " + stream_ + ": cannot look it up: " + status_text(s), 1000);
    std::vector<std::string> subjects = st.value("subjects", std::vector<std::string>{"kubetrail.>"});
    std::vector<const char*> subject_ptrs;
    for (const auto& x : subjects) subject_ptrs.push_back(x.c_str());
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = stream_.c_str();
    sc.Subjects = subject_ptrs.data();
    sc.SubjectsLen = static_cast<int>(subject_ptrs.size());
    sc.Replicas = st.value("replicas", 1);
    const std::string retention = st.value("retention", "limits");
    sc.Retention = retention == "interest"    ? js_InterestPolicy
                   : retention == "workqueue" ? js_WorkQueuePolicy
                                              : js_LimitsPolicy;
    sc.Storage = st.value("storage", "file") == "memory" ? js_MemoryStorage : js_FileStorage;
    if (st.contains("max_age")) sc.MaxAge = duration_ns(st["max_age"].get<std::string>(), "stream.max_age");
    if (st.contains("max_bytes")) sc.MaxBytes = st["max_bytes"].get<int64_t>();
    sc.Duplicates = duration_ns(st.value("duplicate_window", "2m"), "stream.duplicate_window");
    jerr = static_cast<jsErrCode>(0);
    s = js_AddStream(&info, js_.get(), &sc, nullptr, &jerr);
    if (s == NATS_OK || jerr == JSStreamNameExistErr) {  // another kubetrail made it meanwhile
      if (info) jsStreamInfo_Destroy(info);
      host().log(sdk::LogLevel::info, "nats: created stream " + stream_);
      return;
    }
    std::string why = "stream " + stream_ + ": cannot create it: " + status_text(s) +
                      (jerr ? " (JetStream error " + std::to_string(jerr) + ")" : "");
    if (permanent(jerr) || jerr == JSStreamInvalidConfig) throw std::runtime_error(why);
    throw sdk::RetryableError(why, 1000);
  }

  sdk::Result publish(const sdk::ChangeSet& cs) {
    const std::string subject = subject_.render(cs);
    const std::string id(cs.id());
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id.c_str();  // sent as the Nats-Msg-Id header
    po.MaxWait = ack_timeout_ms_;
    if (!stream_.empty()) po.ExpectStream = stream_.c_str();
    const std::string_view body = cs.json();
    jsPubAck* ack = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_Publish(&ack, js_.get(), subject.c_str(), body.data(), static_cast<int>(body.size()), &po, &jerr);
    if (s == NATS_OK) {
      host().record(ack->Duplicate ? duplicates_ : published_, 1);
      jsPubAck_Destroy(ack);
      return sdk::Result::ok();
    }
    std::string why = "publish to " + subject + ": " + status_text(s) +
                      (jerr ? " (JetStream error " + std::to_string(jerr) + ")" : "");
    if (s == NATS_NO_RESPONDERS) why += " - no stream leader for the subject yet, or no stream listens on it";
    if (jerr && permanent(jerr)) return sdk::Result::fail(why);
    return sdk::Result::retry(why, 500);
  }

  SubjectTemplate subject_{"kubetrail"};
  int64_t ack_timeout_ms_ = 5000;
  std::string stream_;
  // Owned, so that a constructor that throws part way frees what it made;
  // destroyed in reverse: the JetStream context, the connection, the options.
  template <class T, void (*Destroy)(T*)>
  struct Deleter {
    void operator()(T* p) const { Destroy(p); }
  };
  std::unique_ptr<natsOptions, Deleter<natsOptions, natsOptions_Destroy>> opts_;
  std::unique_ptr<natsConnection, Deleter<natsConnection, natsConnection_Destroy>> conn_;
  std::unique_ptr<jsCtx, Deleter<jsCtx, jsCtx_Destroy>> js_;
  int32_t published_ = -1, duplicates_ = -1;
};

}  // namespace

KUBETRAIL_PLUGIN_EX(Nats, "nats", "0.1.0", "publishes change sets to a NATS JetStream stream, once each by id", kSchema,
                    KUBETRAIL_CAP_BATCH, KUBETRAIL_THREADING_SERIAL)
