#include "watch/request.hpp"

#include <algorithm>
#include <cctype>

namespace kubetrail::watch {

std::string url_escape(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
      out.push_back(static_cast<char>(c));
    else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xf]);
    }
  }
  return out;
}

std::string field_selector(const model::ResourceType& type, const ListScope& scope) {
  std::string fields = scope.field_selector;
  if (type.namespaced && scope.namespace_scope.empty())
    for (const auto& ns : scope.exclude_namespaces) {
      if (!fields.empty()) fields += ",";
      fields += "metadata.namespace!=" + ns;
    }
  return fields;
}

std::string collection_path(const model::ResourceType& t, const ListScope& scope) {
  std::string p = t.group.empty() ? "/api/" + t.version : "/apis/" + t.group + "/" + t.version;
  if (t.namespaced && !scope.namespace_scope.empty()) p += "/namespaces/" + url_escape(scope.namespace_scope);
  p += "/" + t.resource + "?";
  if (!scope.label_selector.empty()) p += "labelSelector=" + url_escape(scope.label_selector) + "&";
  if (auto fields = field_selector(t, scope); !fields.empty()) p += "fieldSelector=" + url_escape(fields) + "&";
  return p;
}

bool excluded(const ListScope& scope, std::string_view ns) {
  return std::find(scope.exclude_namespaces.begin(), scope.exclude_namespaces.end(), ns) !=
         scope.exclude_namespaces.end();
}

}  // namespace kubetrail::watch
