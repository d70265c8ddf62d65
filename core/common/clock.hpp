// Wall-clock time as Kubernetes writes it.
#pragma once

#include <string>

namespace kubetrail {

// Now as RFC 3339 UTC with milliseconds: "2026-11-23T10:00:00.123Z".
std::string now_rfc3339();

}  // namespace kubetrail
