#include "model/resource_type.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

namespace kubetrail::model {

void split_api_version(std::string_view api_version, std::string& group, std::string& version) {
  auto slash = api_version.find('/');
  if (slash == std::string_view::npos) {
    group.clear();
    version.assign(api_version);
  } else {
    group.assign(api_version.substr(0, slash));
    version.assign(api_version.substr(slash + 1));
  }
}

namespace {

// Kinds whose plural is not the regular one, and cluster-scoped built-ins.
struct KnownKind {
  std::string_view kind, resource;
  bool namespaced;
};
constexpr std::array kKnownKinds{
    KnownKind{"Endpoints", "endpoints", true},
    KnownKind{"Namespace", "namespaces", false},
    KnownKind{"Node", "nodes", false},
    KnownKind{"PersistentVolume", "persistentvolumes", false},
    KnownKind{"ClusterRole", "clusterroles", false},
    KnownKind{"ClusterRoleBinding", "clusterrolebindings", false},
    KnownKind{"CustomResourceDefinition", "customresourcedefinitions", false},
    KnownKind{"StorageClass", "storageclasses", false},
    KnownKind{"PriorityClass", "priorityclasses", false},
    KnownKind{"IngressClass", "ingressclasses", false},
    KnownKind{"MutatingWebhookConfiguration", "mutatingwebhookconfigurations", false},
    KnownKind{"ValidatingWebhookConfiguration", "validatingwebhookconfigurations", false},
    KnownKind{"APIService", "apiservices", false},
    KnownKind{"CSIDriver", "csidrivers", false},
    KnownKind{"CSINode", "csinodes", false},
    KnownKind{"VolumeAttachment", "volumeattachments", false},
    KnownKind{"RuntimeClass", "runtimeclasses", false},
};

bool is_vowel(char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; }

// The plural rules of k8s.io/gengo's namer (used for built-in types and
// kubebuilder CRDs): -s/-x/-ch/-sh take -es, consonant+y takes -ies.
std::string plural_of(std::string lower) {
  auto ends = [&](std::string_view s) { return lower.size() >= s.size() && lower.ends_with(s); };
  if (ends("s") || ends("x") || ends("z") || ends("ch") || ends("sh")) return lower + "es";
  if (ends("y") && lower.size() > 1 && !is_vowel(lower[lower.size() - 2]))
    return lower.substr(0, lower.size() - 1) + "ies";
  return lower + "s";
}

}  // namespace

bool ResourceType::named_by(std::string_view name) const {
  if (name == resource || name == qualified_name()) return true;
  if (name.starts_with("*.")) return name.size() > 2 && name.substr(2) == group;  // every resource of the group
  return name.size() == kind.size() && std::equal(name.begin(), name.end(), kind.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
         });
}

ResourceType resource_type_for(std::string_view api_version, std::string_view kind) {
  ResourceType t;
  split_api_version(api_version, t.group, t.version);
  t.kind.assign(kind);
  auto known = std::find_if(kKnownKinds.begin(), kKnownKinds.end(), [&](const KnownKind& k) { return k.kind == kind; });
  if (known != kKnownKinds.end()) {
    t.resource.assign(known->resource);
    t.namespaced = known->namespaced;
    return t;
  }
  std::string lower(kind);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  t.resource = plural_of(std::move(lower));
  return t;
}

}  // namespace kubetrail::model
