// What is wrong with a YAML document a user pointed kubetrail at (a
// manifest, a kubeconfig), in words for the error that names the file.
#pragma once

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/exceptions.h>

#include <string>

namespace kubetrail::kube {

// yaml-cpp's message, except where its depth guard stopped a document
// nested too deep: that one says "bad file".
inline std::string yaml_problem(const YAML::Exception& e) {
  return dynamic_cast<const YAML::DeepRecursion*>(&e) ? "nested too deep" : e.msg;
}

}  // namespace kubetrail::kube
