// exec: runs a local program per change set (or per batch) with the change
// set JSON on stdin and its essentials in the environment.
//
// Exit 0: OK. Exit 75 (EX_TEMPFAIL): RETRY. Anything else, or killed: FAIL
// with the last line of stderr. A run past timeout_ms has its whole process
// group killed and is retried. The program's output goes to kubetrail's log,
// bounded.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <kubetrail/sdk.hpp>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

extern char** environ;

namespace {

namespace sdk = kubetrail::sdk;

constexpr const char* kSchema = R"schema({
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "exec handler",
  "type": "object",
  "additionalProperties": false,
  "required": ["command"],
  "properties": {
    "command": {"type": "array", "minItems": 1, "items": {"type": "string"},
                "description": "argv: program and arguments (no shell unless shell = true)"},
    "shell": {"type": "boolean", "default": false, "description": "run the command, joined by spaces, with /bin/sh -c"},
    "per": {"enum": ["change", "batch"], "default": "change",
            "description": "change: one run per change set; batch: one run per batch, stdin a JSON array"},
    "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 3600000, "default": 30000},
    "env": {"type": "object", "additionalProperties": {"type": "string"}, "description": "extra environment"},
    "workdir": {"type": "string", "minLength": 1}
  }
})schema";

constexpr size_t kCaptureLimit = 64 * 1024;  // per stream, per run
constexpr int kExitTempFail = 75;            // EX_TEMPFAIL from sysexits.h

struct RunResult {
  int exit_code = -1;  // -1: killed by a signal
  bool timed_out = false;
  std::string out, err;
  std::string spawn_error;
};

bool runnable(const std::string& command) {
  if (command.find('/') != std::string::npos) return access(command.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    std::string full = (dir.empty() ? "." : dir) + "/" + command;
    if (access(full.c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

class Exec : public sdk::Plugin {
 public:
  Exec(std::string_view config_json, sdk::Host host) : sdk::Plugin(host) {
    auto cfg = nlohmann::json::parse(config_json);
    argv_ = cfg["command"].get<std::vector<std::string>>();
    // A command that cannot run is a start-up error (and so check-config's),
    // not a dead letter per change set later.
    if (!cfg.value("shell", false) && !runnable(argv_[0]))
      throw std::runtime_error("command \"" + argv_[0] + "\" is not an executable file" +
                               (argv_[0].find('/') == std::string::npos ? " found in PATH" : ""));
    if (cfg.value("shell", false)) {
      std::string joined;
      for (const auto& a : argv_) joined += (joined.empty() ? "" : " ") + a;
      argv_ = {"/bin/sh", "-c", joined};
    }
    per_batch_ = cfg.value("per", "change") == "batch";
    timeout_ms_ = cfg.value("timeout_ms", 30000);
    workdir_ = cfg.value("workdir", "");
    const auto env = cfg.value("env", nlohmann::json::object());  // named: items() must not outlive it
    for (auto& [k, v] : env.items()) extra_env_.push_back(k + "=" + v.get<std::string>());
    if (!workdir_.empty() && access(workdir_.c_str(), X_OK) != 0)
      throw std::runtime_error("workdir " + workdir_ + ": " + std::strerror(errno));
  }

  sdk::Result handle(const sdk::Batch& batch) override {
    sdk::Result result;
    result.item_status.assign(batch.size(), sdk::Status::ok);
    if (per_batch_) {
      std::string input = "[";
      for (size_t i = 0; i < batch.size(); ++i) input += (i ? "," : "") + std::string(batch[i].json());
      input += "]";
      std::vector<std::string> env = {"KUBETRAIL_COUNT=" + std::to_string(batch.size())};
      auto r = outcome(run(input, env));
      r.item_status.clear();
      return r;
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      auto cs = batch[i];
      std::vector<std::string> env = {"KUBETRAIL_TYPE=" + std::string(cs.type_name()),
                                      "KUBETRAIL_KIND=" + std::string(cs.kind()),
                                      "KUBETRAIL_NAMESPACE=" + std::string(cs.object_namespace()),
                                      "KUBETRAIL_NAME=" + std::string(cs.name()),
                                      "KUBETRAIL_SUMMARY=" + std::string(cs.summary()),
                                      "KUBETRAIL_ID=" + std::string(cs.id())};
      auto r = outcome(run(std::string(cs.json()), env));
      if (r.status == sdk::Status::ok) continue;
      for (size_t k = i; k < batch.size(); ++k) result.item_status[k] = r.status;  // the rest were not run
      result.status = r.status;
      result.message = r.message;
      return result;
    }
    return result;
  }

 private:
  sdk::Result outcome(const RunResult& r) {
    log_output(r);
    if (!r.spawn_error.empty()) return sdk::Result::fail(r.spawn_error);
    if (r.timed_out) return sdk::Result::retry(argv_[0] + ": killed after timeout_ms " + std::to_string(timeout_ms_));
    if (r.exit_code == 0) return sdk::Result::ok();
    std::string last = last_line(r.err);
    std::string what = r.exit_code < 0 ? "killed by a signal" : "exited " + std::to_string(r.exit_code);
    std::string msg = argv_[0] + ": " + what + (last.empty() ? "" : ": " + last);
    if (r.exit_code == kExitTempFail) return sdk::Result::retry(msg);
    return sdk::Result::fail(msg);
  }

  void log_output(const RunResult& r) {
    for (const auto* s : {&r.out, &r.err}) {
      if (s->empty()) continue;
      std::string text = (s == &r.out ? "stdout: " : "stderr: ") + *s;
      while (!text.empty() && text.back() == '\n') text.pop_back();
      host().log(s == &r.out ? sdk::LogLevel::info : sdk::LogLevel::warn, text);
    }
  }

  static std::string last_line(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    auto nl = s.rfind('\n');
    s = nl == std::string::npos ? s : s.substr(nl + 1);
    return s.size() > 300 ? s.substr(0, 300) + "..." : s;
  }

  RunResult run(const std::string& input, const std::vector<std::string>& env_add) {
    RunResult res;
    // Everything the child needs is prepared before fork: after it, only
    // async-signal-safe calls (we may be one thread of many).
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
    for (const auto& e : extra_env_) env_strings.push_back(e);
    for (const auto& e : env_add) env_strings.push_back(e);
    std::vector<char*> envp, argv;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = argv_;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
      res.spawn_error = std::string("pipe: ") + std::strerror(errno);
      return res;
    }
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
      res.spawn_error = std::string("fork: ") + std::strerror(errno);
      for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) close(fd);
      return res;
    }
    if (pid == 0) {
      setpgid(0, 0);  // its own process group, so a timeout kills its children too
      // Dies with kubetrail: a command orphaned by a crash could still
      // deliver the change set that the restarted kubetrail delivers again
      // from its outbox. (The signal follows the forking thread, which
      // waits for the command before it goes on.)
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(126);  // kubetrail died before prctl
      dup2(in[0], 0);
      dup2(out[1], 1);
      dup2(err[1], 2);
      if (!workdir_.empty() && chdir(workdir_.c_str()) != 0) _exit(126);
      execvpe(argv[0], argv.data(), envp.data());
      const char msg[] = "exec failed: command not found or not executable\n";
      ssize_t ignored = write(2, msg, sizeof msg - 1);
      (void)ignored;
      _exit(127);
    }
    setpgid(pid, pid);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    // The host ignores SIGPIPE (plugin.h), so a program that does not read
    // its stdin makes write() fail with EPIPE instead of killing us.
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    size_t written = 0;
    int in_fd = in[1];
    if (input.empty()) {
      close(in_fd);
      in_fd = -1;
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
    bool out_open = true, err_open = true;
    char buf[4096];
    while (out_open || err_open || in_fd >= 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        res.timed_out = true;
        kill(-pid, SIGKILL);
        break;
      }
      pollfd fds[3];
      int n = 0;
      if (out_open) fds[n++] = {out[0], POLLIN, 0};
      if (err_open) fds[n++] = {err[0], POLLIN, 0};
      if (in_fd >= 0) fds[n++] = {in_fd, POLLOUT, 0};
      int pr = poll(fds, n, static_cast<int>(std::min<long>(left.count(), 1000)));
      if (pr < 0 && errno != EINTR) break;
      for (int i = 0; i < n && pr > 0; ++i) {
        if (!fds[i].revents) continue;
        if (fds[i].fd == in_fd) {
          ssize_t w = write(in_fd, input.data() + written, input.size() - written);
          if (w > 0) written += static_cast<size_t>(w);
          if (w < 0 && errno != EAGAIN) written = input.size();  // reader gone
          if (written >= input.size()) {
            close(in_fd);
            in_fd = -1;
          }
          continue;
        }
        ssize_t r = read(fds[i].fd, buf, sizeof buf);
        std::string& sink = fds[i].fd == out[0] ? res.out : res.err;
        if (r > 0) {
          if (sink.size() < kCaptureLimit) sink.append(buf, std::min<size_t>(r, kCaptureLimit - sink.size()));
        } else if (r == 0 || errno != EAGAIN) {
          (fds[i].fd == out[0] ? out_open : err_open) = false;
        }
      }
    }
    if (in_fd >= 0) close(in_fd);
    close(out[0]);
    close(err[0]);
    // Output closed does not mean exited (a program may close its streams, or
    // pass them to a child): wait for it, still within the deadline.
    int status = 0;
    for (;;) {
      pid_t w = waitpid(pid, &status, res.timed_out ? 0 : WNOHANG);
      if (w == pid || (w < 0 && errno != EINTR)) break;
      if (w == 0 && std::chrono::steady_clock::now() >= deadline) {
        res.timed_out = true;
        kill(-pid, SIGKILL);
        continue;
      }
      if (w == 0) usleep(2000);
    }
    if (res.timed_out) return res;
    res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (res.exit_code == 0 && !WIFEXITED(status)) res.exit_code = -1;
    return res;
  }

  std::vector<std::string> argv_;
  bool per_batch_ = false;
  long timeout_ms_ = 30000;
  std::string workdir_;
  std::vector<std::string> extra_env_;
};

}  // namespace

KUBETRAIL_PLUGIN_EX(Exec, "exec", "0.1.0", "runs a program per change set or batch, change set JSON on stdin", kSchema,
                    KUBETRAIL_CAP_BATCH, KUBETRAIL_THREADING_SERIAL)
