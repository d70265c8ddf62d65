// What the watch stage needs of an API server: a GET with the whole body, and
// a GET whose body is handed over as it arrives (a watch). kube::Client is the
// real one (libcurl); unit tests and fuzzers script their own, so that list
// and watch handling runs without a network, a server or a clock.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace kubetrail::kube {

struct Response {
  long status = 0;           // 0: no HTTP response (see error)
  std::string body;          // for get(); for stream(), only the body of a non-2xx answer
  std::string content_type;  // of the answer
  std::string error;         // transport error, or why a credential could not be had
  uint32_t retry_after_ms = 0;
  // The TLS handshake failed on a certificate: the server's did not verify
  // (another CA, a name it lacks) or ours was refused. A configuration
  // error, not an outage: retrying cannot make a certificate trusted.
  bool tls_rejected = false;
};

class Api {
 public:
  virtual ~Api() = default;
  // GET path (with its query), the whole body. `accept` replaces the
  // default Accept header (application/json). `body_memory`, when given, is
  // a string whose memory the body is built in (its text is discarded): a
  // list of 200 pages of 4 MB hands back each page's body for the next one,
  // instead of growing and faulting in a new 4 MB buffer per page.
  virtual Response get(std::string_view path, long timeout_ms = 60000, std::string_view accept = {},
                       std::string* body_memory = nullptr) = 0;
  // GET path, handing the body to on_data as it arrives. Returns when the
  // server ends the response, on_data returns false, `stop` becomes true
  // (checked at least once a second), or after timeout_ms.
  virtual Response stream(std::string_view path, const std::function<bool(std::string_view)>& on_data,
                          const std::atomic<bool>& stop, long timeout_ms) = 0;
};

}  // namespace kubetrail::kube
