// Redaction markers: what a redacted value is replaced with in pruned
// objects and change sets.
#pragma once

#include <string>
#include <string_view>

namespace kubetrail::diff {

// "<redacted hmac:1a2b3c4d>": the first 32 bits of HMAC-SHA-256(key, value).
// A change stays visible (another value, another marker) while a guessed
// value cannot be checked against it without the key (an unsalted hash
// could: sha256 of "aHVudGVyMg==" confirmed "hunter2").
std::string redacted_marker(std::string_view key, std::string_view value);
// 32 random bytes, for a key nobody configured.
std::string random_redaction_key();

}  // namespace kubetrail::diff
