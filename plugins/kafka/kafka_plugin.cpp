// kafka: produces each change set to a Kafka topic with librdkafka's
// idempotent producer, so that an audit store, a SIEM or a CMDB read every
// cluster's changes from one durable log.
//
// Idempotent (enable.idempotence, acks=all, always: the config cannot turn
// them off): librdkafka's own retries - a leader moving, a broker
// restarting - never write a message twice or out of order within its
// partition. The key is cluster/namespace/name, so one object's changes go
// to one partition, in order. The change-set id travels in the
// `kubetrail-id` header: a change set kubetrail delivers again after a
// crash (Kafka has no id-based deduplication) carries the same id, for the
// consumer to drop.
//
// Status per item from its delivery report: delivered OK; not delivered in
// delivery_timeout_ms, or any transient broker error RETRY; a message the
// broker refuses for good (too large, invalid, not authorised) FAIL.
//
// Built against the SDK only, as any third-party plugin would be.
#include <librdkafka/rdkafka.h>
#include <kubetrail/sdk.hpp>

#include <cstring>
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
  "title": "kafka handler",
  "type": "object",
  "additionalProperties": false,
  "required": ["topic"],
  "properties": {
    "brokers": {"type": "string", "minLength": 1, "description": "bootstrap servers, HOST:PORT[,HOST:PORT...]"},
    "brokers_env": {"type": "string", "minLength": 1},
    "topic": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,249}$"},
    "delivery_timeout_ms": {"type": "integer", "minimum": 1000, "maximum": 3600000, "default": 30000,
                            "description": "how long librdkafka keeps retrying a message before the change set is RETRY"},
    "linger_ms": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 5},
    "sasl_username_env": {"type": "string", "minLength": 1},
    "sasl_password_env": {"type": "string", "minLength": 1},
    "sasl_password_file": {"type": "string", "minLength": 1},
    "properties": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "librdkafka properties passed through (security.protocol, sasl.mechanisms, ssl.ca.location, compression.type, ...); not enable.idempotence or acks, and no secrets: use the *_env / *_file keys"}
  }
})schema";

// Properties that would break what this handler promises, or that carry
// secrets (those come from *_env / *_file, never from the config text).
constexpr const char* kRefused[] = {"enable.idempotence",    "acks",
                                    "request.required.acks", "bootstrap.servers",
                                    "metadata.broker.list",  "sasl.password",
                                    "ssl.key.password",      "sasl.oauthbearer.client.secret",
                                    "message.timeout.ms",    "delivery.timeout.ms"};

bool permanent(rd_kafka_resp_err_t e) {
  switch (e) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__INVALID_ARG: return true;
    default: return false;
  }
}

class Kafka : public sdk::Plugin {
 public:
  Kafka(std::string_view config_json, sdk::Host host) : sdk::Plugin(host) {
    auto cfg = nlohmann::json::parse(config_json);
    topic_ = cfg.at("topic").get<std::string>();
    if (cfg.contains("brokers") == cfg.contains("brokers_env"))
      throw std::runtime_error("set exactly one of brokers and brokers_env");
    std::string brokers = cfg.contains("brokers") ? cfg["brokers"].get<std::string>() : kp::read_secret(cfg, "brokers");
    delivery_timeout_ms_ = cfg.value("delivery_timeout_ms", 30000);

    settings_.emplace_back("bootstrap.servers", brokers);
    settings_.emplace_back("client.id", "kubetrail");
    settings_.emplace_back("linger.ms", std::to_string(cfg.value("linger_ms", 5)));
    const auto properties = cfg.value("properties", nlohmann::json::object());  // named: items() must not outlive it
    for (auto& [k, v] : properties.items()) {
      for (const char* r : kRefused)
        if (k == r)
          throw std::runtime_error("properties." + k + ": set by the handler (" +
                                   (std::strstr(r, "password") || std::strstr(r, "secret")
                                        ? std::string("secrets come from sasl_password_env or sasl_password_file")
                                        : std::string("idempotent, acks=all, delivery_timeout_ms, brokers")) +
                                   ")");
      settings_.emplace_back(k, v.get<std::string>());
    }
    if (cfg.contains("sasl_username_env"))
      settings_.emplace_back("sasl.username", kp::read_secret(cfg, "sasl_username"));
    if (cfg.contains("sasl_password_env") && cfg.contains("sasl_password_file"))
      throw std::runtime_error("set one of sasl_password_env and sasl_password_file");
    if (std::string p = kp::read_secret(cfg, "sasl_password"); !p.empty()) settings_.emplace_back("sasl.password", p);
    settings_.emplace_back("enable.idempotence", "true");
    settings_.emplace_back("acks", "all");
    settings_.emplace_back("message.timeout.ms", std::to_string(delivery_timeout_ms_));
    producer_ = make_producer();  // validates every property now, naming the one refused
    produced_ = host.define_metric(sdk::MetricKind::counter, "kafka_produced_total",
                                   "change sets the brokers acknowledged (acks=all)");
  }

  ~Kafka() override {
    if (producer_) {
      rd_kafka_flush(producer_.get(), 5000);
      producer_.reset();
    }
  }
  Kafka(const Kafka&) = delete;
  Kafka& operator=(const Kafka&) = delete;

  sdk::Result handle(const sdk::Batch& batch) override {
    if (!producer_) producer_ = make_producer();  // after a fatal error (see below)
    std::vector<Slot> slots(batch.size());
    size_t i = 0;
    for (const auto& cs : batch) produce(cs, slots[i++]);
    // Every delivery report of the batch: librdkafka gives up on a message
    // after message.timeout.ms, so this returns by then (plus a margin).
    rd_kafka_flush(producer_.get(), delivery_timeout_ms_ + 5000);
    rd_kafka_poll(producer_.get(), 0);

    sdk::Result result;
    result.item_status.assign(batch.size(), sdk::Status::ok);
    size_t delivered = 0;
    for (size_t k = 0; k < slots.size(); ++k) {
      const Slot& s = slots[k];
      if (s.done && s.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ++delivered;
        continue;
      }
      rd_kafka_resp_err_t err = s.done ? s.err : RD_KAFKA_RESP_ERR__MSG_TIMED_OUT;
      sdk::Status st = permanent(err) ? sdk::Status::fail : sdk::Status::retry;
      result.item_status[k] = st;
      if (result.status == sdk::Status::ok || (result.status == sdk::Status::fail && st == sdk::Status::retry)) {
        result.status = st;
        result.message = "produce to " + topic_ + ": " + rd_kafka_err2str(err);
        result.retry_after_ms = st == sdk::Status::retry ? 1000 : 0;
      }
    }
    host().record(produced_, static_cast<double>(delivered));
    char why[512];
    if (rd_kafka_fatal_error(producer_.get(), why, sizeof why) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      // An idempotent producer that hit a fatal error produces nothing
      // more: the next batch gets a new one.
      host().log(sdk::LogLevel::warn, std::string("kafka: producer failed for good, starting a new one: ") + why);
      producer_.reset();
    }
    return result;
  }

 private:
  struct Slot {
    bool done = false;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  };
  struct Destroy {
    void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
  };

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    auto* slot = static_cast<Slot*>(m->_private);
    slot->done = true;
    slot->err = m->err;
  }
  static void on_log(const rd_kafka_t* rk, int level, const char* fac, const char* text) {
    auto* self = static_cast<Kafka*>(rd_kafka_opaque(rk));
    if (!self) return;
    sdk::LogLevel l = level <= 3 ? sdk::LogLevel::error : level <= 4 ? sdk::LogLevel::warn : sdk::LogLevel::debug;
    self->host().log(l, std::string("kafka: ") + fac + ": " + text);
  }

  std::unique_ptr<rd_kafka_t, Destroy> make_producer() {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    for (const auto& [k, v] : settings_) {
      if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        // librdkafka's message names the property; never the value (it may be a secret).
        throw std::runtime_error((k.rfind("sasl.", 0) == 0 ? "sasl: " : "properties." + k + ": ") + std::string(err));
      }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, &Kafka::on_delivery);
    rd_kafka_conf_set_log_cb(conf, &Kafka::on_log);
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
      rd_kafka_conf_destroy(conf);
      throw std::runtime_error(std::string("producer: ") + err);
    }
    return std::unique_ptr<rd_kafka_t, Destroy>(rk);
  }

  void produce(const sdk::ChangeSet& cs, Slot& slot) {
    std::string key(cs.cluster());
    key.append("/").append(cs.object_namespace()).append("/").append(cs.name());
    const std::string_view id = cs.id(), type = cs.type_name(), body = cs.json();
    for (int attempt = 0;; ++attempt) {
      rd_kafka_headers_t* headers = rd_kafka_headers_new(2);
      rd_kafka_header_add(headers, "kubetrail-id", -1, id.data(), static_cast<ssize_t>(id.size()));
      rd_kafka_header_add(headers, "kubetrail-type", -1, type.data(), static_cast<ssize_t>(type.size()));
      rd_kafka_resp_err_t err = rd_kafka_producev(
          producer_.get(), RD_KAFKA_V_TOPIC(topic_.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(body.data()), body.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(&slot), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
      rd_kafka_headers_destroy(headers);  // not taken on failure
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && attempt < 100) {
        rd_kafka_poll(producer_.get(), 100);  // delivery reports free room
        continue;
      }
      slot.done = true;
      slot.err = err;
      return;
    }
  }

  std::string topic_;
  int delivery_timeout_ms_ = 30000;
  std::vector<std::pair<std::string, std::string>> settings_;
  std::unique_ptr<rd_kafka_t, Destroy> producer_;
  int32_t produced_ = -1;
};

}  // namespace

KUBETRAIL_PLUGIN_EX(Kafka, "kafka", "0.1.0", "produces change sets to a Kafka topic (idempotent, acks=all)", kSchema,
                    KUBETRAIL_CAP_BATCH, KUBETRAIL_THREADING_SERIAL)
