#include "kube/kubeconfig.hpp"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "common/error.hpp"
#include "kube/yaml_problem.hpp"

namespace kubetrail::kube {

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p, const std::string& what) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw Error(what + ": cannot read " + p.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string base64_decode(const std::string& in, const std::string& what) {
  static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  for (char c : in) {
    if (c == '=' || c == '\n' || c == '\r' || c == ' ') continue;
    auto pos = chars.find(c);
    if (pos == std::string::npos) throw Error(what + ": not valid base64");
    val = (val << 6) + static_cast<int>(pos);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

struct Named {
  YAML::Node node;
  fs::path file;  // the file that defined it: relative paths are relative to its folder
};

struct Merged {
  std::map<std::string, Named> clusters, users, contexts;
  std::string current_context;
  std::string files;  // for messages
};

std::string str(const YAML::Node& n, const char* key) {
  if (!n || !n.IsMap()) return {};
  YAML::Node v = n[key];
  return v && v.IsScalar() ? v.Scalar() : std::string();
}

void merge_file(const fs::path& file, Merged& m) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file.string());
  } catch (const YAML::Exception& e) {
    throw Error("kubeconfig " + file.string() + ":" + std::to_string(e.mark.line + 1) +
                ": invalid YAML: " + yaml_problem(e));
  }
  if (!root || root.IsNull()) return;
  if (!root.IsMap()) throw Error("kubeconfig " + file.string() + ": not a kubeconfig (expected a mapping)");
  auto take = [&](const char* list, const char* inner, std::map<std::string, Named>& into) {
    YAML::Node items = root[list];
    if (!items) return;
    if (!items.IsSequence()) throw Error("kubeconfig " + file.string() + ": key \"" + list + "\" must be a list");
    for (const auto& item : items) {
      if (!item.IsMap() || !item["name"] || !item["name"].IsScalar())
        throw Error("kubeconfig " + file.string() + ": an entry of \"" + list + "\" has no name");
      std::string name = item["name"].Scalar();
      if (!into.count(name)) into[name] = Named{item[inner], file};  // first file wins
    }
  };
  take("clusters", "cluster", m.clusters);
  take("users", "user", m.users);
  take("contexts", "context", m.contexts);
  if (m.current_context.empty()) m.current_context = str(root, "current-context");
  m.files += (m.files.empty() ? "" : ":") + file.string();
}

fs::path relative_to(const std::string& path, const fs::path& file) {
  fs::path p(path);
  return p.is_absolute() ? p : (file.parent_path() / p).lexically_normal();
}

// "certificate-authority-data" or "certificate-authority" (a file).
std::string pem(const Named& n, const char* data_key, const char* file_key, const std::string& where) {
  if (auto d = str(n.node, data_key); !d.empty()) return base64_decode(d, where + "." + data_key);
  if (auto f = str(n.node, file_key); !f.empty()) return read_text(relative_to(f, n.file), where + "." + file_key);
  return {};
}

}  // namespace

namespace {
Connection load_merged(const std::vector<std::string>& files, const std::string& context) {
  Merged m;
  for (const auto& f : files) {
    if (f.empty()) continue;
    std::error_code ec;
    if (!fs::exists(f, ec)) continue;  // kubectl skips missing files in $KUBECONFIG
    merge_file(f, m);
  }
  if (m.files.empty()) {
    std::string list;
    for (const auto& f : files) list += (list.empty() ? "" : ", ") + f;
    throw Error("no kubeconfig found (looked at: " + list + ")");
  }
  std::string ctx_name = context.empty() ? m.current_context : context;
  if (ctx_name.empty()) throw Error("kubeconfig " + m.files + ": no current-context, and no --context given");
  auto ctx = m.contexts.find(ctx_name);
  if (ctx == m.contexts.end()) throw Error("kubeconfig " + m.files + ": context \"" + ctx_name + "\" not found");
  std::string cluster_name = str(ctx->second.node, "cluster"), user_name = str(ctx->second.node, "user");
  auto cluster = m.clusters.find(cluster_name);
  if (cluster == m.clusters.end())
    throw Error("kubeconfig " + ctx->second.file.string() + ": context \"" + ctx_name + "\" names cluster \"" +
                cluster_name + "\", which is not defined");

  Connection c;
  c.source = "kubeconfig " + m.files + " (context " + ctx_name + ")";
  std::string where = "kubeconfig " + cluster->second.file.string() + ": clusters[" + cluster_name + "]";
  c.server = str(cluster->second.node, "server");
  if (c.server.empty()) throw Error(where + ": key \"server\" is missing");
  while (!c.server.empty() && c.server.back() == '/') c.server.pop_back();
  c.ca_pem = pem(cluster->second, "certificate-authority-data", "certificate-authority", where);
  c.insecure_skip_tls_verify = str(cluster->second.node, "insecure-skip-tls-verify") == "true";
  c.tls_server_name = str(cluster->second.node, "tls-server-name");
  c.proxy_url = str(cluster->second.node, "proxy-url");
  if (auto ns = str(ctx->second.node, "namespace"); !ns.empty()) c.default_namespace = ns;

  if (!user_name.empty()) {
    auto user = m.users.find(user_name);
    if (user == m.users.end())
      throw Error("kubeconfig " + ctx->second.file.string() + ": context \"" + ctx_name + "\" names user \"" +
                  user_name + "\", which is not defined");
    std::string uwhere = "kubeconfig " + user->second.file.string() + ": users[" + user_name + "]";
    const YAML::Node& u = user->second.node;
    c.client_cert_pem = pem(user->second, "client-certificate-data", "client-certificate", uwhere);
    c.client_key_pem = pem(user->second, "client-key-data", "client-key", uwhere);
    if (c.client_cert_pem.empty() != c.client_key_pem.empty())
      throw Error(uwhere + ": a client certificate needs both client-certificate and client-key");
    c.token = str(u, "token");
    if (auto tf = str(u, "tokenFile"); !tf.empty()) c.token_file = relative_to(tf, user->second.file).string();
    c.username = str(u, "username");
    c.password = str(u, "password");
    if (u && u["exec"]) {
      const YAML::Node& e = u["exec"];
      ExecCredentialPlugin p;
      p.api_version = str(e, "apiVersion");
      p.command = str(e, "command");
      if (p.command.empty()) throw Error(uwhere + ".exec: key \"command\" is missing");
      if (p.api_version != "client.authentication.k8s.io/v1" && p.api_version != "client.authentication.k8s.io/v1beta1")
        throw Error(uwhere + ".exec: apiVersion \"" + p.api_version +
                    "\" is not supported (client.authentication.k8s.io/v1 or v1beta1)");
      if (p.command.find('/') != std::string::npos && !fs::path(p.command).is_absolute())
        p.command = relative_to(p.command, user->second.file).string();  // as kubectl resolves it
      if (e["args"])
        for (const auto& a : e["args"]) p.args.push_back(a.as<std::string>());
      if (e["env"])
        for (const auto& kv : e["env"]) p.env.emplace_back(str(kv, "name"), str(kv, "value"));
      p.install_hint = str(e, "installHint");
      c.exec = p;
    }
    if (u && u["auth-provider"])
      throw Error(uwhere + ": auth-provider plugins are not supported (use an exec credential plugin)");
  }
  return c;
}
}  // namespace

Connection load_kubeconfig(const std::vector<std::string>& files, const std::string& context) {
  // A kubeconfig is a file a user points at: a node of the wrong shape (a
  // clusters entry without "cluster:", a list where a string belongs) is an
  // error naming the file, not yaml-cpp's InvalidNode escaping as "internal
  // error".
  try {
    return load_merged(files, context);
  } catch (const YAML::Exception& e) {
    std::string list;
    for (const auto& f : files)
      if (!f.empty()) list += (list.empty() ? "" : ":") + f;
    std::string at = e.mark.is_null() ? "" : ":" + std::to_string(e.mark.line + 1);
    throw Error("kubeconfig " + list + at + ": unexpected shape: " + e.msg);
  }
}

std::optional<Connection> in_cluster(const std::string& sa_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !port || !*host || !*port) return std::nullopt;
  Connection c;
  std::string h = host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";  // IPv6
  c.server = "https://" + h + ":" + port;
  c.token_file = sa_dir + "/token";
  c.ca_pem = read_text(sa_dir + "/ca.crt", "in-cluster config");
  std::error_code ec;
  if (fs::exists(sa_dir + "/namespace", ec))
    c.default_namespace = read_text(sa_dir + "/namespace", "in-cluster config");
  c.source = "in-cluster service account";
  c.in_cluster = true;
  return c;
}

bool choose_compression(const std::string& setting, const Connection& c) {
  if (setting == "gzip") return true;
  if (setting == "none") return false;
  if (c.in_cluster) return false;
  const std::string host = parse_server_address(c.server).host;
  const bool ipv4_loopback =
      host.starts_with("127.") && host.find_first_not_of("0123456789.") == std::string_view::npos;
  const bool loopback = host == "localhost" || host == "::1" || ipv4_loopback;
  return !loopback;
}

ServerAddress parse_server_address(std::string_view server) {
  ServerAddress a;
  std::string_view rest = server;
  if (auto at = rest.find("://"); at != std::string_view::npos) {
    a.scheme = std::string(rest.substr(0, at));
    rest.remove_prefix(at + 3);
  } else {
    a.scheme = "https";
  }
  auto slash = rest.find('/');
  if (slash != std::string_view::npos) {
    a.prefix = std::string(rest.substr(slash));
    while (a.prefix.size() > 1 && a.prefix.back() == '/') a.prefix.pop_back();
    if (a.prefix == "/") a.prefix.clear();
    rest = rest.substr(0, slash);
  }
  std::string_view port;
  if (rest.starts_with('[')) {  // [IPv6]:PORT
    auto close = rest.find(']');
    a.host = std::string(rest.substr(1, close == std::string_view::npos ? std::string_view::npos : close - 1));
    if (close != std::string_view::npos && close + 1 < rest.size() && rest[close + 1] == ':')
      port = rest.substr(close + 2);
  } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    a.host = std::string(rest.substr(0, colon));
    port = rest.substr(colon + 1);
  } else {
    a.host = std::string(rest);
  }
  a.port = port.empty() ? (a.scheme == "http" ? "80" : "443") : std::string(port);
  return a;
}

Connection resolve_connection(const std::string& kubeconfig, const std::string& context) {
  if (!kubeconfig.empty()) {
    std::string path = kubeconfig;
    if (path.starts_with("~/"))
      if (const char* home = std::getenv("HOME")) path = std::string(home) + path.substr(1);
    return load_kubeconfig({path}, context);
  }
  if (context.empty())
    if (auto c = in_cluster()) return *c;
  std::vector<std::string> files;
  if (const char* env = std::getenv("KUBECONFIG"); env && *env) {
    std::stringstream ss(env);
    for (std::string f; std::getline(ss, f, ':');) files.push_back(f);
  } else if (const char* home = std::getenv("HOME")) {
    files.push_back(std::string(home) + "/.kube/config");
  }
  return load_kubeconfig(files, context);
}

}  // namespace kubetrail::kube
