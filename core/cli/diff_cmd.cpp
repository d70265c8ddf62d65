// `kubetrail diff [--output text|json] OLD NEW`: the semantic diff of two
// manifest files, with the same noise rules and redaction as the daemon.
// Exit status like diff(1): 0 equal, 1 different, 2 trouble.
#include <iostream>
#include <map>

#include "cli/common.hpp"
#include "common/error.hpp"
#include "diff/diff.hpp"
#include "kube/manifest.hpp"
#include "model/resource_type.hpp"

namespace kubetrail::cli {

namespace {

void print_text(const model::ChangeSet& cs) {
  std::cout << model::to_string(cs.type) << " " << cs.summary << "\n";
  for (const auto& c : cs.changes) {
    std::cout << "  " << c.path << ": ";
    if (c.op == model::FieldOp::add)
      std::cout << "+ " << c.new_json;
    else if (c.op == model::FieldOp::remove)
      std::cout << "- " << c.old_json;
    else
      std::cout << c.old_json << " → " << c.new_json;
    std::cout << "\n";
  }
}

}  // namespace

int run_diff(const Args& args) {
  if (args.positional.size() != 2) {
    std::cerr << "usage: kubetrail diff [--config FILE] [--output text|json] OLD NEW\n";
    return 2;
  }
  std::string output = args.get("--output", "text");
  if (output != "text" && output != "json") {
    std::cerr << "kubetrail diff: --output must be text or json, not \"" << output << "\"\n";
    return 2;
  }
  config::Config cfg;
  std::vector<nlohmann::json> olds, news;
  try {
    cfg = load_config(args);
    cfg.diff.redaction_key = configured_redaction_key(cfg);
    olds = kube::load_manifests(args.positional[0]);
    news = kube::load_manifests(args.positional[1]);
  } catch (const std::exception& e) {
    std::cerr << "kubetrail diff: " << e.what() << "\n";
    return 2;
  }
  std::map<std::string, const nlohmann::json*> old_by_id;
  for (const auto& o : olds) old_by_id[kube::manifest_identity(o)] = &o;

  diff::ChangeDetector detector(cfg.cluster.name, cfg.diff);
  simdjson::dom::parser parser_a, parser_b;
  diff::DocumentDiffer differ;
  std::string now = now_rfc3339();
  std::vector<model::ChangeSet> sets;

  // Fields of a manifest, whatever their type: a manifest is a file a user
  // points at, so a bare "metadata:" or a numeric kind is data, not a crash.
  auto text = [](const nlohmann::json& o, const char* key) {
    auto it = o.is_object() ? o.find(key) : o.end();
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  auto base = [&](const nlohmann::json& o, model::ChangeType t) {
    model::ChangeSet cs;
    cs.type = t;
    cs.cluster = cfg.cluster.name;
    cs.observed_at = now;
    cs.resource = model::resource_type_for(text(o, "apiVersion"), text(o, "kind"));
    static const nlohmann::json empty = nlohmann::json::object();
    auto mdit = o.find("metadata");
    const auto& md = mdit != o.end() && mdit->is_object() ? *mdit : empty;
    cs.object_namespace = text(md, "namespace");
    cs.name = text(md, "name");
    cs.uid = text(md, "uid");
    cs.resource_version = text(md, "resourceVersion");
    cs.id = model::change_set_id(cs.cluster, t, cs.uid, cs.object_namespace, cs.name, cs.resource_version);
    return cs;
  };
  // Which file the manifest at hand came from, for errors.
  const std::string* file = &args.positional[0];
  auto pruned = [&](const nlohmann::json& o, simdjson::dom::parser& p, const model::ResourceType& t) {
    simdjson::dom::element e;
    if (auto err =
            p.parse(simdjson::padded_string(o.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))).get(e))
      throw Error(kube::manifest_identity(o) + ": " + simdjson::error_message(err));
    return detector.prune(t, e).json;
  };

  try {
    // CRDs among the manifests teach the diff their resources' keyed lists.
    for (const auto* list : {&olds, &news})
      for (const auto& o : *list)
        if (text(o, "kind") == "CustomResourceDefinition") {
          simdjson::dom::parser p;
          simdjson::dom::element crd;
          if (p.parse(simdjson::padded_string(o.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)))
                  .get(crd) == simdjson::SUCCESS)
            detector.learn_crd(crd);
        }
    for (const auto& n : news) {
      auto it = old_by_id.find(kube::manifest_identity(n));
      file = &args.positional[1];
      if (it == old_by_id.end()) {
        auto cs = base(n, model::ChangeType::added);
        cs.new_object = pruned(n, parser_a, cs.resource);
        sets.push_back(std::move(cs));
        continue;
      }
      auto cs = base(n, model::ChangeType::modified);
      std::string b = pruned(n, parser_b, cs.resource);
      file = &args.positional[0];
      std::string a = pruned(*it->second, parser_a, cs.resource);
      old_by_id.erase(it);
      if (a == b) continue;
      differ.diff(parser_a.parse(a).value(), parser_b.parse(b).value(), cs.changes, detector.list_keys(cs.resource));
      if (!cs.changes.empty()) sets.push_back(std::move(cs));
    }
    file = &args.positional[0];
    for (const auto& [id, o] : old_by_id) {
      auto cs = base(*o, model::ChangeType::deleted);
      cs.old_object = pruned(*o, parser_a, cs.resource);
      sets.push_back(std::move(cs));
    }
    for (auto& cs : sets) cs.summary = model::summarize(cs);
  } catch (const std::exception& e) {
    // 2, never 1: exit 1 means "different" (diff(1)).
    std::cerr << "kubetrail diff: " << *file << ": " << e.what() << "\n";
    return 2;
  }
  for (const auto& cs : sets) {
    if (output == "json")
      std::cout << cs.to_json() << "\n";
    else
      print_text(cs);
  }
  return sets.empty() ? 0 : 1;
}

}  // namespace kubetrail::cli
