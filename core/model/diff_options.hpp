// What to ignore and what to hide: the [diff] config section as the change
// detector takes it (config reads it, diff applies it).
#pragma once

#include <string>
#include <vector>

namespace kubetrail::model {

struct DiffOptions {
  std::vector<std::string> ignore_paths;    // patterns, dropped for every resource
  std::vector<std::string> redact_paths;    // patterns, redacted for every resource
  std::vector<std::string> include_status;  // resources (plural, kind or plural.group) whose status is reported
  bool include_objects = false;             // carry old/new objects in Modified change sets
  // Dotted paths of object fields the routes match on (`match.where`): each
  // change set carries their values (ChangeSet::fields).
  std::vector<std::string> field_paths;
  // The key of the redaction markers' HMAC (bytes). Empty: a random key of
  // this ChangeDetector's own (markers stable within one process only). run
  // takes it from [diff] redaction_key_file/_env, else the state store.
  std::string redaction_key;
};

}  // namespace kubetrail::model
