// Where the API server is and how to authenticate to it: kubeconfig files
// (merged the way kubectl merges $KUBECONFIG), or the in-cluster service
// account. The result holds secrets (tokens, keys): never log it.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kubetrail::kube {

// users[].user.exec: a credential plugin (client.authentication.k8s.io).
struct ExecCredentialPlugin {
  std::string api_version;  // client.authentication.k8s.io/v1 or v1beta1
  std::string command;
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
  std::string install_hint;
};

struct Connection {
  std::string server;  // https://host:port, no trailing slash
  std::string ca_pem;  // "" = system trust store
  bool insecure_skip_tls_verify = false;
  std::string tls_server_name;
  std::string proxy_url;
  std::string client_cert_pem, client_key_pem;
  std::string token;       // static bearer token
  std::string token_file;  // re-read when it changes (bound service-account tokens rotate)
  std::string username, password;
  std::optional<ExecCredentialPlugin> exec;
  std::string default_namespace = "default";
  std::string source;       // for messages: "kubeconfig /x (context c)" or "in-cluster service account"
  bool in_cluster = false;  // from the pod's service account
  // Ask the server to compress responses (Accept-Encoding). See
  // choose_compression().
  bool compress = true;
};

// [cluster] compression applied to a connection: "gzip" and "none" as
// said; "auto" is off when the server is on loopback or reached from inside
// the cluster - kube-apiserver gzips every response over 128 KiB, so each
// list page would be compressed by the server and inflated by kubetrail on
// a link where the bytes cost less than the CPU - and on elsewhere.
bool choose_compression(const std::string& setting, const Connection& c);

// A kubeconfig server URL in parts: SCHEME://HOST[:PORT][/PREFIX], HOST
// possibly an [IPv6] literal (kept here without its brackets), PORT 443 or
// 80 by scheme when absent, PREFIX "" or "/..." (an API server behind a
// proxy path, as Rancher serves clusters).
struct ServerAddress {
  std::string scheme, host, port, prefix;
  // HOST as a URL or curl's CONNECT_TO needs it: [IPv6] in brackets.
  std::string url_host() const { return host.find(':') == std::string::npos ? host : "[" + host + "]"; }
};
ServerAddress parse_server_address(std::string_view server);

// Reads and merges kubeconfig files like kubectl: for each map entry
// (clusters, users, contexts by name) and for current-context, the first
// file that sets it wins; relative file paths are relative to the file that
// names them. `context` "" means current-context. Throws kubetrail::Error
// naming the file and key.
Connection load_kubeconfig(const std::vector<std::string>& files, const std::string& context);

// The in-cluster service account, if KUBERNETES_SERVICE_HOST/PORT are set.
std::optional<Connection> in_cluster(const std::string& sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

// kubetrail's default order: an explicit kubeconfig (flag or [cluster]
// kubeconfig), else in-cluster, else $KUBECONFIG (colon-separated), else
// ~/.kube/config.
Connection resolve_connection(const std::string& kubeconfig, const std::string& context);

}  // namespace kubetrail::kube
