#include "sys/seccomp.hpp"

#include <net/if.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <vector>

#include "sys/fd.hpp"

namespace us::sys {

namespace {

// Seen after start-up in `strace -f` over the lab suite, plus their obvious siblings (readv next
// to read, ppoll next to poll) so that a harmless change of library does not stop the node.
// Absent on purpose: open and openat (no file is read after start-up), execve, fork and clone,
// mprotect (no page becomes executable), ptrace, setuid and friends, prctl, bpf, mount.
constexpr std::string_view kAllowed[] = {
    // descriptors and readiness
    "read", "readv", "write", "writev", "close", "fcntl", "fstat", "newfstatat", "epoll_wait",
    "epoll_pwait", "epoll_ctl", "poll", "ppoll",
    // sockets already open, and TCP/UDP ones to the server and the peer (socket() below)
    "bind", "connect", "listen", "accept", "accept4", "shutdown", "setsockopt", "getsockopt",
    "getsockname", "getpeername", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg",
    "recvmmsg",
    // memory (mmap below: never executable)
    "brk", "munmap", "mremap", "madvise",
    // time, randomness (channel nonces), locks
    "clock_gettime", "clock_getres", "gettimeofday", "nanosleep", "clock_nanosleep", "getrandom",
    "futex", "sched_yield",
    // the process itself: signals, its own ids, its end
    "rt_sigreturn", "rt_sigprocmask", "restart_syscall", "getpid", "gettid", "exit", "exit_group",
    // read-only: sd_notify (sys/service_notify) asks them before each message to the service
    // manager, to decide whether to attach credentials
    "getuid", "geteuid", "getgid", "getegid",
    // not the node's own: the sanitizer runtimes clear their signal stack on the way out
    "sigaltstack"};

constexpr std::string_view kRestricted[] = {"socket", "kill", "tgkill", "mmap", "ioctl"};

// ioctl requests: SIOCINQ and SIOCOUTQ on client sockets (the rejoin's "quiet" check), and the
// link flags the fault points clear to fail like a host (the one use of CAP_NET_ADMIN).
constexpr unsigned long kIoctls[] = {FIONREAD, TIOCOUTQ, SIOCGIFFLAGS, SIOCSIFFLAGS};

// System call names by number for the SIGSYS reporter, resolved before the filter is loaded:
// libseccomp's resolver allocates, which a signal handler must not.
constexpr int kNames = 512;
const char* g_names[kNames] = {};

struct CtxRelease {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Ctx = std::unique_ptr<void, CtxRelease>;

// Arguments are compared on their low 32 bits: int and pid_t arguments leave the upper half of
// the register undefined.
scmp_arg_cmp arg_equals(unsigned arg, uint64_t value) {
  return scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, 0xffffffffULL, value & 0xffffffffULL};
}

std::string rule_error(std::string_view what, int rc) {
  return "seccomp: " + std::string(what) + ": " + std::strerror(-rc);
}

Result<Ctx, std::string> make_filter(OnRefused on) {
  Ctx ctx(seccomp_init(on == OnRefused::Stop ? SCMP_ACT_TRAP : SCMP_ACT_LOG));
  if (!ctx) return Err{std::string("seccomp: cannot create a filter")};
  for (auto name : kAllowed) {
    std::string n(name);
    int nr = seccomp_syscall_resolve_name(n.c_str());
    if (nr == __NR_SCMP_ERROR) return Err{"seccomp: no system call " + n + " on this machine"};
    if (int rc = seccomp_rule_add_array(ctx.get(), SCMP_ACT_ALLOW, nr, 0, nullptr); rc != 0)
      return Err{rule_error(n, rc)};
  }
  struct Rule {
    const char* what;
    int nr;
    scmp_arg_cmp cmp;
  };
  const auto self = static_cast<uint64_t>(::getpid());
  std::vector<Rule> rules = {
      // No AF_PACKET, AF_NETLINK or raw socket: only what connects to the server and the peer.
      {"socket", SCMP_SYS(socket), arg_equals(0, AF_INET)},
      {"socket", SCMP_SYS(socket), arg_equals(0, AF_UNIX)},
      // Signals to itself only: the fault points' SIGKILL, abort()'s SIGABRT, the SIGSYS below.
      {"kill", SCMP_SYS(kill), arg_equals(0, self)},
      {"tgkill", SCMP_SYS(tgkill), arg_equals(0, self)},
      {"mmap", SCMP_SYS(mmap), scmp_arg_cmp{2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0}},
  };
  for (unsigned long req : kIoctls) rules.push_back({"ioctl", SCMP_SYS(ioctl), arg_equals(1, req)});
  for (const auto& r : rules)
    if (int rc = seccomp_rule_add_array(ctx.get(), SCMP_ACT_ALLOW, r.nr, 1, &r.cmp); rc != 0)
      return Err{rule_error(r.what, rc)};
  return ctx;
}

Result<size_t, std::string> bpf_size(void* ctx) {
  Fd mem(::memfd_create("seccomp", MFD_CLOEXEC));
  if (!mem) return Err{errno_text("memfd_create")};
  if (int rc = seccomp_export_bpf(ctx, mem.get()); rc != 0) return Err{rule_error("export", rc)};
  off_t bytes = ::lseek(mem.get(), 0, SEEK_END);
  if (bytes < 0) return Err{errno_text("lseek")};
  return static_cast<size_t>(bytes) / 8;  // sizeof(struct sock_filter)
}

// Async-signal-safe: fixed buffer, write(2), kill(2); both are on the allow-list.
void on_sigsys(int, siginfo_t* si, void*) {
  char line[256];
  size_t n = 0;
  auto put = [&](const char* s) {
    while (*s != '\0' && n < sizeof line - 1) line[n++] = *s++;
  };
  int nr = si->si_syscall;
  put("seccomp: refused system call ");
  put(nr >= 0 && nr < kNames && g_names[nr] != nullptr ? g_names[nr] : "?");
  char digits[16];
  int d = 0;
  unsigned v = nr < 0 ? 0u : static_cast<unsigned>(nr);
  do {
    digits[d++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0 && d < 15);
  put(" (");
  while (d > 0 && n < sizeof line - 1) line[n++] = digits[--d];
  put("): the node stops (report this; node.user = \"root\" runs without the filter)\n");
  (void)!::write(STDERR_FILENO, line, n);
  // SA_RESETHAND made SIGSYS fatal again; it is delivered once this handler returns.
  ::kill(::getpid(), SIGSYS);
}

}  // namespace

std::span<const std::string_view> allowed_syscalls() {
  return kAllowed;
}

std::span<const std::string_view> restricted_syscalls() {
  return kRestricted;
}

Result<size_t, std::string> build_syscall_filter() {
  auto ctx = make_filter(OnRefused::Stop);
  if (!ctx) return Err{ctx.error()};
  return bpf_size(ctx->get());
}

Result<size_t, std::string> install_syscall_filter(OnRefused on) {
  auto ctx = make_filter(on);
  if (!ctx) return Err{ctx.error()};
  auto size = bpf_size(ctx->get());
  if (!size) return size;
  for (int nr = 0; nr < kNames; ++nr)
    if (g_names[nr] == nullptr)
      g_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
  struct sigaction sa {};
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGSYS, &sa, nullptr) != 0) return Err{errno_text("sigaction SIGSYS")};
  sigset_t sys;
  sigemptyset(&sys);
  sigaddset(&sys, SIGSYS);
  ::sigprocmask(SIG_UNBLOCK, &sys, nullptr);
  if (int rc = seccomp_load(ctx->get()); rc != 0) return Err{rule_error("load", rc)};
  return size;
}

}  // namespace us::sys
