#include "common/log_context.hpp"

#include <utility>
#include <vector>

#include "common/json_writer.hpp"

namespace kubetrail::log_context {

namespace {

// Each field as it is written: `,"key":value`, value already JSON.
thread_local std::vector<std::string> t_fields;

std::string encoded_key(std::string_view key) {
  std::string out = ",";
  append_json_string(key, out);
  return out + ":";
}

// %j: the message as a JSON string; %F: this thread's fields.
class MessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string out;
    append_json_string(std::string_view(msg.payload.data(), msg.payload.size()), out);
    dest.append(out.data(), out.data() + out.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<MessageFlag>(); }
};

class FieldsFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string out;
    append_json_fields(out);
    dest.append(out.data(), out.data() + out.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<FieldsFlag>(); }
};

}  // namespace

Scope::Scope(std::string_view key, std::string_view value) {
  std::string field = encoded_key(key);
  append_json_string(value, field);
  t_fields.push_back(std::move(field));
}

Scope::Scope(std::string_view key, uint64_t value) { t_fields.push_back(encoded_key(key) + std::to_string(value)); }

Scope::~Scope() { t_fields.pop_back(); }

void append_json_fields(std::string& out) {
  for (const auto& f : t_fields) out += f;
}

std::unique_ptr<spdlog::formatter> json_formatter() {
  auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  f->add_flag<MessageFlag>('j').add_flag<FieldsFlag>('F');
  f->set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","msg":%j%F})");
  return f;
}

}  // namespace kubetrail::log_context
