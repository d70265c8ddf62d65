// Errors as values for the stages that handle untrusted bytes (watch streams,
// manifests, plugin results). Set-up code throws kubetrail::Error instead,
// which the CLI turns into one clear line.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace kubetrail {

// A set-up error whose message is already fit for the user: it names the
// file, key or byte offset at fault.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Either a value or an error message. Deliberately tiny: the hot path needs
// nothing more, and std::expected is C++23.
template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(implicit)
  static Result failure(std::string message) { return Result(Failure{std::move(message)}); }
  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  const std::string& error() const { return std::get<1>(v_).message; }

 private:
  struct Failure {
    std::string message;
  };
  explicit Result(Failure f) : v_(std::move(f)) {}
  std::variant<T, Failure> v_;
};

}  // namespace kubetrail
