// Routes: which handler chains a change set goes to. A route matches on
// resource, namespace, change type and changed paths; a route without match
// takes everything. A change set no route matches goes nowhere (and is
// counted by the caller).
//
// Snapshot change sets (inventory mode) are not changes and no route of the
// config takes them: each handler has a route of its own, named
// "inventory/HANDLER" with that handler alone in its chain, and a Snapshot
// change set goes down the one its snapshot names. Which objects a
// handler's snapshot holds is what its routes would take (takes()).
//
// Immutable after construction; safe to share between threads.
#pragma once

#include <functional>
#include <memory>
#include <optional>
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
  // `handlers`: every handler's name, for their inventory routes.
  explicit Router(const std::vector<config::RouteConfig>& routes, const std::vector<std::string>& handlers = {});
  ~Router();
  Router(Router&&) noexcept;

  // The routes a change set takes, in config order. For `paths`, a Modified
  // change set matches when any change's path overlaps a pattern (the
  // pattern names it, an ancestor or a descendant); Added and Deleted carry
  // the whole object and so match any `paths`.
  // A Snapshot change set takes only its handler's inventory route.
  std::vector<const Route*> match(const model::ChangeSet& cs) const;

  // Inventory: whether a route with `handler` in its chain takes this
  // object - its resource, namespace and `where` fields; a snapshot is the
  // whole object, so `paths` and `types` do not narrow it.
  bool takes(std::string_view handler, const model::ChangeSet& cs) const;
  // Whether some route with `handler` in its chain could take an object of
  // this resource (what a snapshot for it needs to list).
  bool may_take(std::string_view handler, const model::ResourceType& type) const;
  // takes() for an object of `type` in namespace `ns` ("" cluster-scoped)
  // decided without the object: nullopt when only a route's `where` (the
  // object's fields) can tell. A snapshot counts what it will send before
  // it sends it, and builds each object's change set only for this.
  std::optional<bool> takes_at(std::string_view handler, const model::ResourceType& type, std::string_view ns) const;

  size_t size() const noexcept { return routes_.size(); }
  const Route* at(size_t index) const noexcept;
  // By name (the outbox records the route of a row by name), or null when
  // the running config has no such route (it was removed by a reload).
  const Route* find(std::string_view name) const noexcept;

 private:
  struct Compiled;
  std::vector<std::unique_ptr<Compiled>> routes_;
  size_t config_routes_ = 0;  // routes_[0, config_routes_) are the config's; the rest, inventory routes
  bool resource_matches(const Compiled& c, const model::ResourceType& type) const;
  bool object_matches(const Compiled& c, const model::ChangeSet& cs) const;  // resource, namespace, where
  // Resource and namespace only (no `match`: everything).
  bool place_matches(const Compiled& c, const model::ResourceType& type, std::string_view ns) const;
  // Whether a config route with `handler` in its chain satisfies `matches`.
  bool any_route_of(std::string_view handler, const std::function<bool(const Compiled&)>& matches) const;
};

}  // namespace kubetrail::route
