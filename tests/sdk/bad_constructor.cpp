// Must NOT compile: a plugin class whose constructor is not
// (std::string_view config_json, kubetrail::sdk::Host host). The SDK's
// static_assert names the constructor it needs (tests/sdk/static_assert.sh).
#include <kubetrail/sdk.hpp>

class WrongConstructor : public kubetrail::sdk::Plugin {
 public:
  explicit WrongConstructor(kubetrail::sdk::Host host) : kubetrail::sdk::Plugin(host) {}
  kubetrail::sdk::Result handle(const kubetrail::sdk::Batch&) override { return kubetrail::sdk::Result::ok(); }
};

KUBETRAIL_PLUGIN(WrongConstructor, "wrong", "1.0.0", "does not compile", nullptr)
