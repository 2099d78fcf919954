// The hook runner's adapter (node/hooks.cpp, run_runner) with real processes: a forked child runs
// it on one end of a socketpair, the test writes lines into the other and closes it; the runner
// exits once no hook is left running, so waitpid() is the one thing awaited (no polling, no
// sleeps). The hooks are /bin/sh scripts that append what they were told to a file.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "node/hooks.hpp"

namespace us::node::hooks {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const wire::Endpoint kAdvertised{wire::Ipv4Addr(198, 18, 0, 100), 80};
const wire::Ipv4Addr kPeer(198, 18, 0, 11);

class HookRunner : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("understudy_hook_runner_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    settings_.role = Role::Backup;
    settings_.advertised = kAdvertised;
    settings_.peer = kPeer;
    settings_.timeout = 10s;
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path script(const std::string& name, const std::string& body) {
    fs::path p = dir_ / name;
    std::ofstream(p) << "#!/bin/sh\n" << body;
    fs::permissions(p, fs::perms::owner_all);
    return p;
  }

  std::string out() const {
    std::ifstream f(dir_ / "out");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  static std::string line(Hook h, Mode m, Role r = Role::Backup) {
    return encode({h, r, m, kAdvertised, kPeer});
  }

  // Runs the runner in a child, writes `lines` (all before it reads any), closes our end and
  // returns the runner's wait status once it exited.
  int run(const std::vector<std::string>& lines) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    for (const auto& l : lines)
      EXPECT_EQ(::send(sv[0], l.data(), l.size(), MSG_NOSIGNAL), static_cast<ssize_t>(l.size()));
    pid_t pid = ::fork();
    if (pid == 0) {
      // As Notifier::start spawns it: descriptor 3 and nothing above.
      if (sv[1] != 3) ::dup2(sv[1], 3);
      ::close_range(4, ~0U, 0);
      settings_.fd = 3;
      ::_exit(run_runner(settings_));
    }
    ::close(sv[1]);
    ::close(sv[0]);  // the node is gone: the runner finishes what it started, then exits
    int status = 0;
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
    return status;
  }

  fs::path dir_;
  RunnerSettings settings_;
};

// One line per run: what the hook was told, and how many sockets it holds above stderr (the
// runner's end of the socketpair must not be one of them).
constexpr char kRecorder[] =
    "n=0\n"
    "for f in /proc/$$/fd/*; do\n"
    "  i=${f##*/}; [ \"$i\" -gt 2 ] && readlink \"$f\" | grep -q '^socket:' && n=$((n + 1))\n"
    "done\n"
    "echo \"$UNDERSTUDY_EVENT $1 $2 $3 $UNDERSTUDY_ROLE $UNDERSTUDY_MODE $UNDERSTUDY_ADVERTISED "
    "$UNDERSTUDY_PEER sockets=$n\" >> \"$(dirname \"$0\")/out\"\n";

TEST_F(HookRunner, Lines_EachHookRunWithItsEnvironment_ExitsAtEof) {
  settings_.on_front = script("front.sh", kRecorder);
  settings_.on_alone = script("alone.sh", kRecorder);
  int status = run({line(Hook::Front, Mode::Duplex)});
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(out(),
            "front front backup duplex backup duplex 198.18.0.100:80 198.18.0.11 sockets=0\n");
}

TEST_F(HookRunner, RefusedLines_NothingRuns) {
  settings_.on_front = script("front.sh", kRecorder);
  int status = run({
      line(Hook::Front, Mode::Duplex, Role::Primary),  // not this node's role
      encode({Hook::Front, Role::Backup, Mode::Duplex, {wire::Ipv4Addr(192, 0, 2, 1), 80}, kPeer}),
      encode({Hook::Front, Role::Backup, Mode::Duplex, kAdvertised, wire::Ipv4Addr(192, 0, 2, 2)}),
      line(Hook::Alone, Mode::Simplex),  // on_alone is not configured
      "front backup duplex 198.18.0.100:80\n",
  });
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(fs::exists(dir_ / "out")) << out();
}

TEST_F(HookRunner, SameHookWhileRunning_LatestWaitsOthersCoalesced) {
  settings_.on_front = script("front.sh", kRecorder);
  int status = run({line(Hook::Front, Mode::Starting), line(Hook::Front, Mode::Duplex),
                    line(Hook::Front, Mode::Simplex)});
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  // All three were read at once: the first ran, the second was replaced by the third.
  EXPECT_EQ(out(),
            "front front backup starting backup starting 198.18.0.100:80 198.18.0.11 sockets=0\n"
            "front front backup simplex backup simplex 198.18.0.100:80 198.18.0.11 sockets=0\n");
}

TEST_F(HookRunner, HangingHook_KilledWithItsProcessGroupAtTheTimeout) {
  settings_.timeout = 200ms;
  settings_.on_front = script("front.sh",
                              "sleep 1000 &\n"
                              "echo \"$$ $!\" > \"$(dirname \"$0\")/pids\"\n"
                              "wait\n");
  settings_.on_alone = script("alone.sh", kRecorder);
  // The runner exits only once the hanging hook is gone: killed, since it would sleep 1000 s.
  int status = run({line(Hook::Front, Mode::Duplex), line(Hook::Alone, Mode::Simplex)});
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::ifstream pids(dir_ / "pids");
  pid_t shell = 0, child = 0;
  ASSERT_TRUE(pids >> shell >> child);
  EXPECT_NE(::kill(shell, 0), 0);  // reaped by the runner
  // Its sleep, in the same process group, got the SIGKILL too: it ends (init reaps it).
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, child, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 10000), 1) << "the hook's child " << child << " outlived the kill";
    ::close(pidfd);
  }
  // The other hook was not held up by the hanging one.
  EXPECT_NE(out().find("alone alone backup simplex"), std::string::npos) << out();
}

}  // namespace
}  // namespace us::node::hooks
