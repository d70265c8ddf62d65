#include "route/route.hpp"

#include "common/error.hpp"

#include <re2/re2.h>

#include <algorithm>

namespace kubetrail::route {

struct Router::Compiled {
  Route route;
  bool has_match = false;
  config::RouteMatch match;
  std::vector<model::PathPattern> paths;
  struct Wanted {  // one `where` value: exact, or a regex found anywhere in the field's value
    std::string exact;
    std::unique_ptr<const re2::RE2> pattern;  // RE2: linear in the value, which is the object's
  };
  std::vector<std::pair<std::string, std::vector<Wanted>>> where;

  // Every `where` path has a value in the change set that one of its
  // alternatives matches.
  bool where_matches(const model::ChangeSet& cs) const {
    for (const auto& [path, wanted] : where) {
      auto field =
          std::find_if(cs.fields.begin(), cs.fields.end(), [&p = path](const auto& f) { return f.first == p; });
      if (field == cs.fields.end()) return false;
      const std::string& value = field->second;
      if (std::none_of(wanted.begin(), wanted.end(), [&](const Wanted& w) {
            return w.pattern ? RE2::PartialMatch(value, *w.pattern) : value == w.exact;
          }))
        return false;
    }
    return true;
  }
};

Router::Router(const std::vector<config::RouteConfig>& routes, const std::vector<std::string>& handlers) {
  for (const auto& r : routes) {
    auto c = std::make_unique<Compiled>();
    c->route = Route{routes_.size(), r.name, r.chain};
    c->has_match = r.has_match;
    c->match = r.match;
    for (const auto& p : r.match.paths) c->paths.push_back(model::PathPattern::parse(p));
    for (const auto& [path, values] : r.match.where) {
      std::vector<Compiled::Wanted> wanted;
      for (const auto& v : values) {
        if (config::is_where_regex(v)) {
          std::string problem;
          auto pattern = config::compile_where_regex(v, problem);
          if (!pattern) throw Error("route " + r.name + ": " + problem);  // cannot happen: the config checked it
          wanted.push_back({{}, std::move(pattern)});
        } else {
          wanted.push_back({v, nullptr});
        }
      }
      c->where.emplace_back(path, std::move(wanted));
    }
    routes_.push_back(std::move(c));
  }
  config_routes_ = routes_.size();
  for (const auto& h : handlers) {
    auto c = std::make_unique<Compiled>();
    c->route = Route{routes_.size(), config::inventory_route_name(h), {h}};
    routes_.push_back(std::move(c));
  }
}
Router::~Router() = default;

const Route* Router::at(size_t index) const noexcept {
  return index < routes_.size() ? &routes_[index]->route : nullptr;
}

const Route* Router::find(std::string_view name) const noexcept {
  for (const auto& c : routes_)
    if (c->route.name == name) return &c->route;
  return nullptr;
}
Router::Router(Router&&) noexcept = default;

bool Router::resource_matches(const Compiled& c, const model::ResourceType& type) const {
  const auto& m = c.match;
  return !c.has_match || m.resources.empty() ||
         std::any_of(m.resources.begin(), m.resources.end(), [&](auto& n) { return type.named_by(n); });
}

bool Router::place_matches(const Compiled& c, const model::ResourceType& type, std::string_view ns) const {
  if (!c.has_match) return true;
  const auto& m = c.match;
  return resource_matches(c, type) &&
         (m.namespaces.empty() || std::find(m.namespaces.begin(), m.namespaces.end(), ns) != m.namespaces.end());
}

bool Router::object_matches(const Compiled& c, const model::ChangeSet& cs) const {
  if (!c.has_match) return true;
  return place_matches(c, cs.resource, cs.object_namespace) && (c.where.empty() || c.where_matches(cs));
}

std::vector<const Route*> Router::match(const model::ChangeSet& cs) const {
  std::vector<const Route*> out;
  if (cs.type == model::ChangeType::snapshot) {
    if (cs.snapshot)
      if (const Route* r = find(config::inventory_route_name(cs.snapshot->handler)); r && r->index >= config_routes_)
        out.push_back(r);
    return out;
  }
  for (size_t i = 0; i < config_routes_; ++i) {
    const Compiled& c = *routes_[i];
    if (c.has_match) {
      const auto& m = c.match;
      if (!object_matches(c, cs)) continue;
      if (!m.types.empty() && std::find(m.types.begin(), m.types.end(), cs.type) == m.types.end()) continue;
      if (!c.paths.empty() && cs.type == model::ChangeType::modified) {
        bool any = std::any_of(cs.changes.begin(), cs.changes.end(), [&](const model::FieldChange& fc) {
          try {
            model::ParsedPath path(fc.path);
            return std::any_of(c.paths.begin(), c.paths.end(),
                               [&](const model::PathPattern& p) { return p.overlaps(path.segments()); });
          } catch (const Error&) {
            return true;  // cannot happen for paths kubetrail writes; if it did, deliver rather than lose
          }
        });
        if (!any) continue;
      }
    }
    out.push_back(&c.route);
  }
  return out;
}

bool Router::any_route_of(std::string_view handler, const std::function<bool(const Compiled&)>& matches) const {
  for (size_t i = 0; i < config_routes_; ++i) {
    const Compiled& c = *routes_[i];
    if (std::find(c.route.chain.begin(), c.route.chain.end(), handler) != c.route.chain.end() && matches(c))
      return true;
  }
  return false;
}

bool Router::takes(std::string_view handler, const model::ChangeSet& cs) const {
  return any_route_of(handler, [&](const Compiled& c) { return object_matches(c, cs); });
}

std::optional<bool> Router::takes_at(std::string_view handler, const model::ResourceType& type,
                                     std::string_view ns) const {
  // object_matches() without the object: a route whose resources and
  // namespaces take it and that has no `where` takes it; one with a `where`
  // cannot say.
  bool undecided = false;
  const bool taken = any_route_of(handler, [&](const Compiled& c) {
    if (!place_matches(c, type, ns)) return false;
    if (!c.has_match || c.where.empty()) return true;
    undecided = true;
    return false;
  });
  if (taken) return true;
  if (undecided) return std::nullopt;
  return false;
}

bool Router::may_take(std::string_view handler, const model::ResourceType& type) const {
  return any_route_of(handler, [&](const Compiled& c) { return resource_matches(c, type); });
}

}  // namespace kubetrail::route
