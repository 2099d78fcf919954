// Least privilege (sys/privileges, sys/seccomp): the allow-list builds, a forked child with the
// filter loaded dies by SIGSYS on a call outside it (and says which), and a forked root child that
// drops to nobody ends with exactly the ids, capabilities and no_new_privs asked for. Each drop or
// filter happens in a child: neither can be undone, and the test process must keep running.
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "sys/privileges.hpp"
#include "sys/seccomp.hpp"

namespace us::sys {
namespace {

struct ChildEnd {
  int status = 0;
  std::string output;  // what the child wrote to its stderr
};

// Runs `body` in a forked child whose stderr is a pipe; the child's exit code is what body
// returns (unless a signal kills it first).
ChildEnd run_child(const std::function<int()>& body) {
  int p[2];
  if (::pipe(p) != 0) return {-1, "pipe failed"};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    ::dup2(p[1], STDERR_FILENO);
    ::_exit(body());
  }
  ::close(p[1]);
  ChildEnd end;
  char buf[512];
  ssize_t n;
  while ((n = ::read(p[0], buf, sizeof buf)) > 0) end.output.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  ::waitpid(pid, &end.status, 0);
  return end;
}

int load_filter() {
  auto f = install_syscall_filter();
  if (!f) {
    (void)!::write(STDERR_FILENO, f.error().data(), f.error().size());
    return 90;
  }
  return 0;
}

void expect_refused(const ChildEnd& end, const std::string& call) {
  EXPECT_TRUE(WIFSIGNALED(end.status) && WTERMSIG(end.status) == SIGSYS)
      << "status " << end.status << ": " << end.output;
  std::string want = "seccomp: refused system call " + call + " (";
  EXPECT_EQ(end.output.substr(0, want.size()), want) << end.output;
  EXPECT_NE(end.output.find("the node stops"), std::string::npos) << end.output;
}

TEST(SyscallFilter, AllowListBuilds) {
  auto size = build_syscall_filter();
  ASSERT_TRUE(size.ok()) << size.error();
  // One comparison per call at least, and within the kernel's limit for one program.
  EXPECT_GT(*size, allowed_syscalls().size() + restricted_syscalls().size());
  EXPECT_LT(*size, 4096u);
  for (auto forbidden : {"execve", "fork", "clone", "openat", "mprotect", "ptrace", "setuid"}) {
    for (auto name : allowed_syscalls()) EXPECT_NE(name, forbidden);
    for (auto name : restricted_syscalls()) EXPECT_NE(name, forbidden);
  }
}

TEST(SyscallFilter, ExecveIsRefusedAndNamed) {
  auto end = run_child([] {
    if (int rc = load_filter(); rc != 0) return rc;
    if (::getpid() <= 0) return 91;  // allowed calls still work
    char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
    ::execve("/bin/true", argv, environ);
    return 92;
  });
  expect_refused(end, "execve");
}

TEST(SyscallFilter, OpenIsRefused) {
  auto end = run_child([] {
    if (int rc = load_filter(); rc != 0) return rc;
    std::ifstream f("/etc/hostname");
    return 93;
  });
  expect_refused(end, "openat");
}

TEST(SyscallFilter, PacketSocketIsRefusedTcpSocketIsNot) {
  auto tcp = run_child([] {
    if (int rc = load_filter(); rc != 0) return rc;
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 94;
    ::close(fd);
    return 0;
  });
  EXPECT_TRUE(WIFEXITED(tcp.status) && WEXITSTATUS(tcp.status) == 0) << tcp.output;
  auto packet = run_child([] {
    if (int rc = load_filter(); rc != 0) return rc;
    ::socket(AF_PACKET, SOCK_RAW, 0);
    return 95;
  });
  expect_refused(packet, "socket");
}

TEST(SyscallFilter, ExecutableMemoryIsRefused) {
  auto end = run_child([] {
    if (int rc = load_filter(); rc != 0) return rc;
    void* plain = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (plain == MAP_FAILED) return 96;
    ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return 97;
  });
  expect_refused(end, "mmap");
}

TEST(SyscallFilter, SignalsToAnotherProcessAreRefused) {
  pid_t parent = ::getpid();
  auto end = run_child([parent] {
    if (int rc = load_filter(); rc != 0) return rc;
    ::kill(parent, 0);
    return 98;
  });
  expect_refused(end, "kill");
}

TEST(Privileges, FindAccount) {
  auto root = find_account("root");
  ASSERT_TRUE(root.ok()) << root.error();
  EXPECT_EQ(root->uid, 0u);
  EXPECT_EQ(root->gid, 0u);
  auto nobody = find_account("nobody");  // every Debian system has it
  ASSERT_TRUE(nobody.ok()) << nobody.error();
  EXPECT_NE(nobody->uid, 0u);
  auto none = find_account("no-such-user-understudy");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error(), "no user \"no-such-user-understudy\" on this host");
}

TEST(Privileges, CapabilityNames) {
  const int one[] = {CAP_NET_ADMIN};
  const int two[] = {CAP_NET_ADMIN, CAP_NET_RAW};
  EXPECT_EQ(capability_names(one), "cap_net_admin");
  EXPECT_EQ(capability_names(two), "cap_net_admin, cap_net_raw");
  EXPECT_EQ(capability_names({}), "none");
}

std::string status_field(const std::string& status, const std::string& key) {
  std::istringstream in(status);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) {
      auto v = line.substr(key.size() + 1);
      auto start = v.find_first_not_of(" \t");
      return start == std::string::npos ? "" : v.substr(start);
    }
  return "";
}

TEST(Privileges, DropToNobodyKeepsOnlyWhatWasAsked) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  auto nobody = find_account("nobody");
  ASSERT_TRUE(nobody.ok()) << nobody.error();
  auto end = run_child([&] {
    const int keep[] = {CAP_NET_ADMIN};
    if (auto d = drop_to(*nobody, keep); !d) {
      (void)!::write(STDERR_FILENO, d.error().data(), d.error().size());
      return 80;
    }
    if (::setuid(0) == 0) return 81;
    std::ifstream f("/proc/self/status");
    std::stringstream s;
    s << f.rdbuf();
    std::string text = s.str();
    (void)!::write(STDERR_FILENO, text.data(), text.size());
    return 0;
  });
  ASSERT_TRUE(WIFEXITED(end.status) && WEXITSTATUS(end.status) == 0) << end.output;
  std::string uid = std::to_string(nobody->uid), gid = std::to_string(nobody->gid);
  EXPECT_EQ(status_field(end.output, "Uid"), uid + "\t" + uid + "\t" + uid + "\t" + uid);
  EXPECT_EQ(status_field(end.output, "Gid"), gid + "\t" + gid + "\t" + gid + "\t" + gid);
  EXPECT_EQ(status_field(end.output, "Groups"), "");
  const std::string net_admin = "0000000000001000";  // 1 << CAP_NET_ADMIN (12)
  EXPECT_EQ(status_field(end.output, "CapEff"), net_admin);
  EXPECT_EQ(status_field(end.output, "CapPrm"), net_admin);
  EXPECT_EQ(status_field(end.output, "CapBnd"), net_admin);
  EXPECT_EQ(status_field(end.output, "CapInh"), "0000000000000000");
  EXPECT_EQ(status_field(end.output, "CapAmb"), "0000000000000000");
  EXPECT_EQ(status_field(end.output, "NoNewPrivs"), "1");
}

}  // namespace
}  // namespace us::sys
