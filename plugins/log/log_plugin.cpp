// log: writes change sets as readable lines, JSON lines or a coloured
// multi-line form, to stdout, stderr or a size-rotated file.
//
// Built against the SDK only, as any third-party plugin would be.
#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/rotating_file_sink.h>
#include <unistd.h>
#include <kubetrail/sdk.hpp>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

namespace sdk = kubetrail::sdk;

constexpr const char* kSchema = R"schema({
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "log handler",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "format": {"enum": ["text", "json", "pretty"], "default": "text",
               "description": "text: one readable line per change set; json: the change set as one JSON line; pretty: several lines, coloured on a terminal"},
    "path": {"type": "string", "minLength": 1, "default": "-",
             "description": "output file; \"-\" or absent for stdout, \"stderr\" for stderr"},
    "max_size_mb": {"type": "integer", "minimum": 1,
                    "description": "rotate the file when it reaches this size (files only)"},
    "max_files": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 5,
                  "description": "rotated files kept beside the current one"},
    "fields": {"type": "array", "uniqueItems": true,
               "items": {"enum": ["schemaVersion", "id", "cluster", "type", "observedAt", "resource", "namespace",
                                  "name", "uid", "resourceVersion", "actor", "catchUp", "summary", "changes", "old", "new"]},
               "description": "json format: only these keys of each change set"},
    "color": {"enum": ["auto", "always", "never"], "default": "auto",
              "description": "pretty format: colour output (auto: when writing to a terminal)"},
    "flush": {"enum": ["batch", "line"], "default": "batch",
              "description": "batch: the lines of a batch reach the file together, before the batch counts as delivered; line: each line on its own, as it is written"}
  }
})schema";

struct Colors {
  const char *reset = "", *bold = "", *green = "", *red = "", *yellow = "", *dim = "";
  static Colors on() { return {"\033[0m", "\033[1m", "\033[32m", "\033[31m", "\033[33m", "\033[2m"}; }
};

// stdout or stderr, holding what is written until flushed, then writing
// it in one write(2). spdlog's own stdout and stderr sinks flush after
// every line whatever the logger's flush policy is, so "flush": "batch"
// still cost a write(2) per change set on stdout, the default (perf,
// scale_bench: half the delivery thread). The file sink buffers through
// stdio and needs nothing of this.
class StreamSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit StreamSink(FILE* file) : file_(file) {}
  ~StreamSink() override { flush_(); }  // nothing waits after a batch; a line written outside one, if any
  StreamSink(const StreamSink&) = delete;
  StreamSink& operator=(const StreamSink&) = delete;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    formatted_.clear();
    formatter_->format(msg, formatted_);
    pending_.append(formatted_.data(), formatted_.size());
    if (pending_.size() >= kMaxPending) flush_();  // a huge batch: bounded memory, several writes
  }
  void flush_() override {
    std::fflush(file_);  // anything written through stdio comes first
    const int fd = fileno(file_);
    size_t at = 0;
    while (at < pending_.size()) {
      const ssize_t n = ::write(fd, pending_.data() + at, pending_.size() - at);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // a closed or broken stream: as stdio, the lines are lost, not retried forever
      at += static_cast<size_t>(n);
    }
    pending_.clear();
  }

 private:
  static constexpr size_t kMaxPending = size_t{4} << 20;
  FILE* file_;
  spdlog::memory_buf_t formatted_;
  std::string pending_;
};

class LogPlugin : public sdk::Plugin {
 public:
  LogPlugin(std::string_view config_json, sdk::Host host) : sdk::Plugin(host) {
    auto cfg = nlohmann::json::parse(config_json);
    format_ = cfg.value("format", "text");
    std::string path = cfg.value("path", "-");
    fields_ = cfg.value("fields", std::vector<std::string>{});
    std::shared_ptr<spdlog::sinks::sink> sink;
    bool tty = false;
    if (path == "-" || path == "stdout") {
      sink = std::make_shared<StreamSink>(stdout);
      tty = isatty(STDOUT_FILENO);
    } else if (path == "stderr") {
      sink = std::make_shared<StreamSink>(stderr);
      tty = isatty(STDERR_FILENO);
    } else {
      size_t max_mb = cfg.value("max_size_mb", 0);
      size_t max_files = cfg.value("max_files", 5);
      // Without rotation: a rotating sink whose size is never reached.
      size_t max_bytes = max_mb ? max_mb * 1024 * 1024 : SIZE_MAX / 2;
      sink = std::make_shared<spdlog::sinks::rotating_file_sink_mt>(path, max_bytes, max_files);
    }
    std::string color = cfg.value("color", "auto");
    if (format_ == "pretty" && (color == "always" || (color == "auto" && tty))) colors_ = Colors::on();
    // A private logger (never registered): several log handlers may exist,
    // and the host has its own spdlog registry.
    out_ = std::make_shared<spdlog::logger>("log-handler", std::move(sink));
    out_->set_pattern("%v");
    out_->set_level(spdlog::level::info);
    // Either way every line is in the file (the OS's page cache) before
    // handle() returns, so a change set reported delivered is written. Per
    // batch, the lines of one batch go in one write(2) where they fit the
    // buffer (scale_bench: a write per line was ~2 us per change set).
    flush_each_line_ = cfg.value("flush", "batch") == "line";
    out_->flush_on(flush_each_line_ ? spdlog::level::info : spdlog::level::off);
    written_ =
        host.define_metric(sdk::MetricKind::counter, "log_lines_total", "change sets written by the log handler");
  }

  sdk::Result handle(const sdk::Batch& batch) override {
    for (const auto& cs : batch) {
      if (format_ == "json")
        write_json(cs);
      else if (format_ == "pretty")
        write_pretty(cs);
      else
        write_text(cs);
    }
    if (!flush_each_line_) out_->flush();
    host().record(written_, static_cast<double>(batch.size()));
    return sdk::Result::ok();
  }

  sdk::Result flush(uint32_t) override {
    out_->flush();
    return sdk::Result::ok();
  }

 private:
  void write_json(const sdk::ChangeSet& cs) {
    if (fields_.empty()) {
      out_->info(cs.json());
      return;
    }
    auto full = nlohmann::ordered_json::parse(cs.json());
    nlohmann::ordered_json picked = nlohmann::ordered_json::object();
    for (const auto& f : fields_)
      if (full.contains(f)) picked[f] = full[f];
    out_->info(picked.dump());
  }

  static std::string actor_of(const sdk::ChangeSet& cs) {
    auto j = nlohmann::json::parse(cs.json());
    if (j.contains("actor")) return j["actor"].value("manager", "");
    return {};
  }

  static std::string change_text(const sdk::FieldChange& c) {
    switch (c.op()) {
      case sdk::FieldOp::add: return std::string(c.path()) + ": + " + std::string(c.new_json());
      case sdk::FieldOp::remove: return std::string(c.path()) + ": - " + std::string(c.old_json());
      default: return std::string(c.path()) + ": " + std::string(c.old_json()) + " → " + std::string(c.new_json());
    }
  }

  void write_text(const sdk::ChangeSet& cs) {
    std::string line = std::string(cs.type_name()) + " " + std::string(cs.summary());
    std::string actor = actor_of(cs);
    if (!actor.empty()) line += " (by " + actor + ")";
    for (size_t i = 0; i < cs.change_count(); ++i) line += " | " + change_text(cs.change(i));
    out_->info(line);
  }

  void write_pretty(const sdk::ChangeSet& cs) {
    const Colors& c = colors_;
    const char* tc = cs.type() == sdk::ChangeType::added      ? c.green
                     : cs.type() == sdk::ChangeType::deleted  ? c.red
                     : cs.type() == sdk::ChangeType::snapshot ? c.dim
                                                              : c.yellow;
    std::string text = std::string(tc) + c.bold + std::string(cs.type_name()) + c.reset + " " + c.bold +
                       std::string(cs.summary()) + c.reset;
    std::string actor = actor_of(cs);
    text += std::string("\n  ") + c.dim + (actor.empty() ? std::string() : "by " + actor + ", ") +
            std::string(cs.observed_at()) + ", " + std::string(cs.id()) + c.reset;
    for (size_t i = 0; i < cs.change_count(); ++i) {
      auto ch = cs.change(i);
      const char* col = ch.op() == sdk::FieldOp::add ? c.green : ch.op() == sdk::FieldOp::remove ? c.red : c.yellow;
      const char* mark = ch.op() == sdk::FieldOp::add ? "+" : ch.op() == sdk::FieldOp::remove ? "-" : "~";
      text += std::string("\n  ") + col + mark + " " + change_text(ch) + c.reset;
    }
    out_->info(text);
  }

  std::string format_;
  std::vector<std::string> fields_;
  Colors colors_;
  bool flush_each_line_ = false;
  std::shared_ptr<spdlog::logger> out_;
  int32_t written_ = -1;
};

}  // namespace

KUBETRAIL_PLUGIN_EX(LogPlugin, "log", "0.1.0", "writes change sets as text, JSON lines or pretty output", kSchema,
                    KUBETRAIL_CAP_BATCH, KUBETRAIL_THREADING_SERIAL)
