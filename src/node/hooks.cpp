#include "node/hooks.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

extern char** environ;

namespace us::node::hooks {

namespace {

std::optional<Role> parse_role(std::string_view s) {
  for (Role r : {Role::Primary, Role::Backup})
    if (s == to_string(r)) return r;
  return std::nullopt;
}

std::optional<Mode> parse_mode(std::string_view s) {
  for (Mode m : {Mode::Starting, Mode::Duplex, Mode::Simplex})
    if (s == to_string(m)) return m;
  return std::nullopt;
}

std::optional<Hook> parse_hook(std::string_view s) {
  for (Hook h : kHooks)
    if (s == to_string(h)) return h;
  return std::nullopt;
}

// The next space-separated word of `rest`, consumed.
std::string_view next_word(std::string_view& rest) {
  auto end = rest.find(' ');
  auto word = rest.substr(0, end);
  rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
  return word;
}

int64_t ms_since(TimePoint start, TimePoint now) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(now - start).count();
}

}  // namespace

const char* to_string(Hook h) {
  return h == Hook::Front ? "front" : "alone";
}

std::string encode(const Event& e) {
  return std::string(to_string(e.hook)) + " " + to_string(e.role) + " " + to_string(e.mode) + " " +
         e.advertised.to_string() + " " + e.peer.to_string() + "\n";
}

std::optional<Event> decode(std::string_view line) {
  if (line.size() > kMaxLine || line.empty() || line.back() != '\n') return std::nullopt;
  std::string_view rest = line.substr(0, line.size() - 1);
  auto hook = parse_hook(next_word(rest));
  auto role = parse_role(next_word(rest));
  auto mode = parse_mode(next_word(rest));
  auto advertised = wire::Endpoint::parse(next_word(rest));
  auto peer = wire::Ipv4Addr::parse(next_word(rest));
  if (!hook || !role || !mode || !advertised || !peer || !rest.empty()) return std::nullopt;
  Event e{*hook, *role, *mode, *advertised, *peer};
  if (encode(e) != line) return std::nullopt;  // one spelling only (no empty words, no padding)
  return e;
}

std::vector<Hook> Trigger::on_state(Mode mode, bool front) {
  std::vector<Hook> fired;
  if (front && !front_) fired.push_back(Hook::Front);
  if (mode == Mode::Simplex && mode_ != Mode::Simplex) fired.push_back(Hook::Alone);
  mode_ = mode;
  front_ = front;
  return fired;
}

std::optional<Event> Scheduler::start(Slot& s, const Event& e, TimePoint now) {
  s.running = e;
  s.started = now;
  s.killed = false;
  return e;
}

std::optional<Event> Scheduler::on_event(const Event& e, TimePoint now) {
  Slot& s = slot(e.hook);
  if (!s.running) return start(s, e, now);
  if (s.waiting) ++coalesced_;
  s.waiting = e;
  return std::nullopt;
}

std::optional<Event> Scheduler::on_exit(Hook h, TimePoint now) {
  Slot& s = slot(h);
  s.running.reset();
  s.killed = false;
  if (!s.waiting) return std::nullopt;
  Event next = *s.waiting;
  s.waiting.reset();
  return start(s, next, now);
}

std::vector<Hook> Scheduler::overdue(TimePoint now) {
  std::vector<Hook> out;
  for (Hook h : kHooks) {
    Slot& s = slot(h);
    if (s.running && !s.killed && now - s.started >= timeout_) {
      s.killed = true;
      out.push_back(h);
    }
  }
  return out;
}

std::optional<TimePoint> Scheduler::next_deadline() const {
  std::optional<TimePoint> at;
  for (Hook h : kHooks) {
    const Slot& s = slot(h);
    if (s.running && !s.killed && (!at || s.started + timeout_ < *at)) at = s.started + timeout_;
  }
  return at;
}

bool Scheduler::idle() const {
  for (const Slot& s : slots_)
    if (s.running || s.waiting) return false;
  return true;
}

// ---- the daemon's side

Result<Notifier, std::string> Notifier::start(const config::Config& cfg) {
  Notifier n;
  n.configured_[static_cast<int>(Hook::Front)] = !cfg.hooks.on_front.empty();
  n.configured_[static_cast<int>(Hook::Alone)] = !cfg.hooks.on_alone.empty();
  if (cfg.hooks.on_front.empty() && cfg.hooks.on_alone.empty()) return n;
  n.role_ = cfg.node.role;
  n.advertised_ = cfg.service.advertised;
  n.peer_ = cfg.peer.address;

  // The runner's end has no CLOEXEC: the spawn gives it to the runner as descriptor 3.
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0)
    return Err{sys::errno_text("hooks: socketpair")};
  sys::Fd ours(sv[0]), theirs(sv[1]);
  if (::fcntl(ours.get(), F_SETFD, FD_CLOEXEC) != 0 ||
      ::fcntl(ours.get(), F_SETFL, O_NONBLOCK) != 0)
    return Err{sys::errno_text("hooks: fcntl")};

  const std::string timeout = std::to_string(cfg.hooks.timeout_ms);
  const std::string advertised = cfg.service.advertised.to_string();
  const std::string peer = cfg.peer.address.to_string();
  std::vector<std::string> args = {"understudy",   "hook-runner",
                                   "--fd",         "3",
                                   "--on-front",   cfg.hooks.on_front.string(),
                                   "--on-alone",   cfg.hooks.on_alone.string(),
                                   "--timeout-ms", timeout,
                                   "--role",       to_string(cfg.node.role),
                                   "--advertised", advertised,
                                   "--peer",       peer,
                                   "--log-format", config::to_string(cfg.log.format)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  // Descriptor 3 is the runner's end and nothing above it survives: whatever the daemon holds
  // (sockets, devices, the signalfd) stays the daemon's.
  if (theirs.get() != 3) posix_spawn_file_actions_adddup2(&fa, theirs.get(), 3);
  posix_spawn_file_actions_addclosefrom_np(&fa, 4);
  // A clean signal state: the daemon blocks SIGTERM for its signalfd.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Err{sys::errno_text("hooks: starting the hook runner", rc)};
  spdlog::info("hooks: runner started (pid {}): on_front {}, on_alone {}, timeout {} ms", pid,
               cfg.hooks.on_front.empty() ? "none" : cfg.hooks.on_front.string(),
               cfg.hooks.on_alone.empty() ? "none" : cfg.hooks.on_alone.string(),
               cfg.hooks.timeout_ms);
  n.fd_ = std::move(ours);
  return n;
}

void Notifier::on_state(Mode mode, bool front) {
  if (!active()) return;
  for (Hook h : trigger_.on_state(mode, front)) {
    if (!configured_[static_cast<int>(h)]) continue;
    std::string line = encode({h, role_, mode, advertised_, peer_});
    // Never waits: the event loop serves clients; a runner that cannot take a line loses it.
    ssize_t n = ::send(fd_.get(), line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(line.size())) {
      ++sent_;
      continue;
    }
    ++dropped_;
    spdlog::warn("hooks: on_{} not run: the hook runner {} ({} dropped so far)", to_string(h),
                 n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? "is busy" : "is gone",
                 dropped_);
  }
}

// ---- the runner's side

Result<RunnerSettings, std::string> runner_settings(int fd, const std::string& on_front,
                                                    const std::string& on_alone,
                                                    uint64_t timeout_ms, const std::string& role,
                                                    const std::string& advertised,
                                                    const std::string& peer) {
  RunnerSettings s;
  s.fd = fd;
  s.on_front = on_front;
  s.on_alone = on_alone;
  s.timeout = std::chrono::milliseconds(timeout_ms);
  auto r = parse_role(role);
  auto a = wire::Endpoint::parse(advertised);
  auto p = wire::Ipv4Addr::parse(peer);
  if (!r) return Err{"--role: expected primary or backup (got \"" + role + "\")"};
  if (!a) return Err{"--advertised: expected IPv4:port (got \"" + advertised + "\")"};
  if (!p) return Err{"--peer: expected an IPv4 address (got \"" + peer + "\")"};
  s.role = *r;
  s.advertised = *a;
  s.peer = *p;
  return s;
}

namespace {

struct Running {
  pid_t pid = -1;
  sys::Fd pidfd;
};

// The hook's environment: the runner's own, less what belongs to the daemon (systemd's notify
// socket and watchdog, the test fault points), plus the event.
std::vector<std::string> hook_environment(const Event& e) {
  std::vector<std::string> env;
  for (char** v = environ; *v != nullptr; ++v) {
    std::string_view kv(*v);
    if (kv.starts_with("UNDERSTUDY_") || kv.starts_with("NOTIFY_SOCKET=") ||
        kv.starts_with("WATCHDOG_"))
      continue;
    env.emplace_back(kv);
  }
  env.push_back(std::string("UNDERSTUDY_EVENT=") + to_string(e.hook));
  env.push_back(std::string("UNDERSTUDY_ROLE=") + to_string(e.role));
  env.push_back(std::string("UNDERSTUDY_MODE=") + to_string(e.mode));
  env.push_back("UNDERSTUDY_ADVERTISED=" + e.advertised.to_string());
  env.push_back("UNDERSTUDY_PEER=" + e.peer.to_string());
  return env;
}

// Starts `path event role mode` in its own process group (so the timeout kills what it started
// too), stdin from /dev/null, stdout and stderr the runner's (the daemon's log).
Result<Running, std::string> spawn_hook(const std::filesystem::path& path, const Event& e) {
  std::vector<std::string> args = {path.string(), to_string(e.hook), to_string(e.role),
                                   to_string(e.mode)};
  std::vector<std::string> env = hook_environment(e);
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& v : env) envp.push_back(v.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, path.c_str(), &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Err{sys::errno_text(path.c_str(), rc)};
  // The syscall itself: glibc 2.36's <sys/pidfd.h> lacks extern "C".
  sys::Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) {
    int err = errno;
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return Err{sys::errno_text("pidfd_open", err)};
  }
  return Running{pid, std::move(pidfd)};
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("died of ") + ::strsignal(WTERMSIG(status));
  return "ended";
}

class Runner {
 public:
  explicit Runner(const RunnerSettings& s) : s_(s), scheduler_(s.timeout) {}

  int run() {
    // Hooks must not inherit the daemon's end.
    ::fcntl(s_.fd, F_SETFD, FD_CLOEXEC);
    bool daemon_gone = false;
    while (!daemon_gone || !scheduler_.idle()) {
      std::vector<pollfd> fds;
      if (!daemon_gone) fds.push_back({s_.fd, POLLIN, 0});
      std::vector<Hook> polled;
      for (Hook h : kHooks) {
        if (!running_[idx(h)].pidfd) continue;
        fds.push_back({running_[idx(h)].pidfd.get(), POLLIN, 0});
        polled.push_back(h);
      }
      int wait_ms = -1;
      if (auto at = scheduler_.next_deadline())
        wait_ms = static_cast<int>(std::max<int64_t>(0, ms_since(Clock::now(), *at)) + 1);
      int n = ::poll(fds.data(), fds.size(), wait_ms);
      if (n < 0 && errno != EINTR) {
        spdlog::error("hooks: poll: {}", std::strerror(errno));
        return 1;
      }
      size_t i = 0;
      if (!daemon_gone) {
        if (n > 0 && fds[0].revents != 0) daemon_gone = !read_events();
        // What the node sent before it went still runs: it happened (a front that died at
        // once is followed by its peer's own on_front).
        if (daemon_gone && !scheduler_.idle())
          spdlog::info("hooks: the node is gone; running what it sent, then exiting");
        ++i;
      }
      for (Hook h : polled) {
        if (n > 0 && fds[i].revents != 0) reap(h);
        ++i;
      }
      for (Hook h : scheduler_.overdue(Clock::now())) {
        spdlog::warn("hooks: on_{} still running after {} ms: killed (hooks.timeout_ms)",
                     to_string(h), s_.timeout.count());
        ::kill(-running_[idx(h)].pid, SIGKILL);
      }
    }
    return 0;
  }

 private:
  static int idx(Hook h) { return static_cast<int>(h); }

  const std::filesystem::path& path(Hook h) const {
    return h == Hook::Front ? s_.on_front : s_.on_alone;
  }

  // False once the daemon's end is closed.
  bool read_events() {
    for (;;) {
      char buf[kMaxLine + 1];
      ssize_t n = ::recv(s_.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return false;
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
      auto e = decode(std::string_view(buf, static_cast<size_t>(n)));
      if (!e || e->role != s_.role || e->advertised != s_.advertised || e->peer != s_.peer ||
          path(e->hook).empty()) {
        spdlog::warn("hooks: refused a line from the node ({} bytes)", n);
        continue;
      }
      if (auto now = scheduler_.on_event(*e, Clock::now()))
        start(*now);
      else
        spdlog::info("hooks: on_{} ({}) waits for the running one to end", to_string(e->hook),
                     to_string(e->mode));
    }
  }

  void start(const Event& e) {
    for (;;) {
      auto r = spawn_hook(path(e.hook), e);
      if (r) {
        spdlog::info("hooks: on_{} started: {} {} {} {} (pid {})", to_string(e.hook),
                     path(e.hook).string(), to_string(e.hook), to_string(e.role), to_string(e.mode),
                     r->pid);
        running_[idx(e.hook)] = std::move(*r);
        started_at_[idx(e.hook)] = Clock::now();
        return;
      }
      spdlog::error("hooks: on_{} could not start: {}", to_string(e.hook), r.error());
      auto next = scheduler_.on_exit(e.hook, Clock::now());
      if (!next) return;
    }
  }

  void reap(Hook h) {
    Running& r = running_[idx(h)];
    int status = 0;
    if (::waitpid(r.pid, &status, WNOHANG) != r.pid) return;
    auto took = ms_since(started_at_[idx(h)], Clock::now());
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
      spdlog::info("hooks: on_{} exited 0 after {} ms", to_string(h), took);
    else
      spdlog::warn("hooks: on_{} {} after {} ms", to_string(h), describe(status), took);
    r = Running{};
    if (auto next = scheduler_.on_exit(h, Clock::now())) start(*next);
  }

  const RunnerSettings& s_;
  Scheduler scheduler_;
  Running running_[2];
  TimePoint started_at_[2]{};
};

}  // namespace

int run_runner(const RunnerSettings& s) {
  ::signal(SIGPIPE, SIG_IGN);  // a closed log pipe is not a reason to leave a hook unreaped
  return Runner(s).run();
}

}  // namespace us::node::hooks
