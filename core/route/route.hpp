// Routes: which handler chains a change set goes to. A route matches on
// resource, namespace, change type and changed paths; a route without match
// takes everything. A change set no route matches goes nowhere (and is
// counted by the caller).
//
// Immutable after construction; safe to share between threads.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "model/change_set.hpp"

namespace kubetrail::route {

struct Route {
  size_t index = 0;  // position in the config: how delivery keys chains (names are unique too)
  std::string name;
  std::vector<std::string> chain;  // handler names, in order
};

class Router {
 public:
  explicit Router(const std::vector<config::RouteConfig>& routes);
  ~Router();
  Router(Router&&) noexcept;

  // The routes a change set takes, in config order. For `paths`, a Modified
  // change set matches when any change's path overlaps a pattern (the
  // pattern names it, an ancestor or a descendant); Added and Deleted carry
  // the whole object and so match any `paths`.
  std::vector<const Route*> match(const model::ChangeSet& cs) const;

  size_t size() const noexcept { return routes_.size(); }
  const Route* at(size_t index) const noexcept;
  // By name (the outbox records the route of a row by name), or null when
  // the running config has no such route (it was removed by a reload).
  const Route* find(std::string_view name) const noexcept;

 private:
  struct Compiled;
  std::vector<std::unique_ptr<Compiled>> routes_;
};

}  // namespace kubetrail::route
