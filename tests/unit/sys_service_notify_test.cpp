// systemd notification (sys/service_notify): which messages each mode change produces, the watchdog
// interval, the environment, and the real sd_notify reaching a datagram socket from a forked child
// under the node's seccomp filter (as the daemon sends after its privilege drop).
#include "sys/service_notify.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "sys/fd.hpp"
#include "sys/seccomp.hpp"

namespace us::sys {
namespace {

using namespace std::chrono_literals;

struct Recorder {
  std::vector<std::string> sent;
  int rc = 0;
  ServiceNotify::Send send() {
    return [this](const std::string& m) {
      sent.push_back(m);
      return rc;
    };
  }
};

ServiceNotify active(Recorder& r, Role role = Role::Primary,
                     std::optional<std::chrono::microseconds> watchdog = std::nullopt) {
  return ServiceNotify(role, r.send(), watchdog);
}

TEST(ServiceNotify, Inactive_AnyEvent_SendsNothingAndHasNoWatchdog) {
  ServiceNotify n(Role::Primary);
  EXPECT_FALSE(n.active());
  n.on_state(Mode::Duplex, false);
  n.watchdog();
  n.stopping("signal");
  EXPECT_EQ(n.watchdog_every(), std::nullopt);
}

TEST(ServiceNotify, Starting_Init_SendsStatusWithoutReady) {
  Recorder r;
  auto n = active(r);
  n.on_state(Mode::Starting, false);
  EXPECT_EQ(r.sent, std::vector<std::string>{"STATUS=role primary, mode starting"});
}

TEST(ServiceNotify, Starting_EnterDuplex_SendsReadyWithStatusOnce) {
  Recorder r;
  auto n = active(r, Role::Backup);
  n.on_state(Mode::Starting, false);
  n.on_state(Mode::Duplex, true);
  n.on_state(Mode::Duplex, true);  // ticks and heartbeats: nothing changed
  ASSERT_EQ(r.sent.size(), 2u);
  EXPECT_EQ(r.sent[1], "READY=1\nSTATUS=role backup, mode duplex, front");
}

TEST(ServiceNotify, Starting_ServeAlone_SendsReady) {
  Recorder r;
  auto n = active(r);
  n.on_state(Mode::Simplex, true);
  EXPECT_EQ(r.sent, std::vector<std::string>{"READY=1\nSTATUS=role primary, mode simplex, front"});
}

TEST(ServiceNotify, Duplex_PeerLost_SendsNewStatusNotReadyAgain) {
  Recorder r;
  auto n = active(r);
  n.on_state(Mode::Duplex, false);
  n.on_state(Mode::Simplex, true);
  n.on_state(Mode::Duplex, false);  // the backup rejoined
  EXPECT_EQ(r.sent, (std::vector<std::string>{"READY=1\nSTATUS=role primary, mode duplex",
                                              "STATUS=role primary, mode simplex, front",
                                              "STATUS=role primary, mode duplex"}));
}

TEST(ServiceNotify, Duplex_Stopping_SendsStoppingOnceThenNoStatus) {
  Recorder r;
  auto n = active(r, Role::Backup);
  n.on_state(Mode::Duplex, true);
  n.stopping("handing over to the peer");
  n.stopping("signal");
  n.on_state(Mode::Simplex, true);
  ASSERT_EQ(r.sent.size(), 2u);
  EXPECT_EQ(r.sent[1], "STOPPING=1\nSTATUS=role backup, stopping: handing over to the peer");
}

TEST(ServiceNotify, Watchdog_Set_PingsAtHalfTheInterval) {
  Recorder r;
  auto n = active(r, Role::Primary, 5s);
  EXPECT_EQ(n.watchdog_every(), 2500ms);
  n.watchdog();
  EXPECT_EQ(r.sent, std::vector<std::string>{"WATCHDOG=1"});
  EXPECT_EQ(active(r, Role::Primary, 1us).watchdog_every(), 1ms);  // never a busy loop
}

TEST(ServiceNotify, Watchdog_Unset_NoTimerAndNoPing) {
  Recorder r;
  auto n = active(r);
  EXPECT_EQ(n.watchdog_every(), std::nullopt);
  n.watchdog();
  EXPECT_TRUE(r.sent.empty());
}

TEST(ServiceNotify, SendFails_StateStillTracked) {
  Recorder r;
  r.rc = -EACCES;
  auto n = active(r);
  n.on_state(Mode::Duplex, false);
  n.on_state(Mode::Duplex, false);
  EXPECT_EQ(r.sent.size(), 1u);  // no retry storm on every tick
}

// Sets or clears an environment variable for one test, and restores it.
class EnvVar {
 public:
  EnvVar(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~EnvVar() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(ServiceNotify, FromEnvironment_NoNotifySocket_Inactive) {
  EnvVar socket("NOTIFY_SOCKET", nullptr);
  EnvVar watchdog("WATCHDOG_USEC", "1000000");
  auto n = ServiceNotify::from_environment(Role::Primary);
  EXPECT_FALSE(n.active());
  EXPECT_EQ(n.watchdog_every(), std::nullopt);
}

TEST(ServiceNotify, FromEnvironment_SocketAndWatchdog_Active) {
  EnvVar socket("NOTIFY_SOCKET", "/nonexistent/notify");
  EnvVar pid("WATCHDOG_PID", nullptr);
  {
    EnvVar watchdog("WATCHDOG_USEC", "400000");
    auto n = ServiceNotify::from_environment(Role::Backup);
    EXPECT_TRUE(n.active());
    EXPECT_EQ(n.watchdog_every(), 200ms);
  }
  EnvVar no_watchdog("WATCHDOG_USEC", nullptr);
  EXPECT_EQ(ServiceNotify::from_environment(Role::Backup).watchdog_every(), std::nullopt);
}

// The daemon notifies after its privilege drop, under the seccomp filter: a call sd_notify makes
// outside the allow-list would kill it by SIGSYS. A forked child loads the filter and notifies a
// socket bound here; both messages must arrive and the child must exit normally.
TEST(ServiceNotify, RealSdNotify_UnderSeccompFilter_Arrives) {
  char dir_template[] = "/tmp/us-notify-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  std::filesystem::path dir(dir_template);
  std::string path = (dir / "notify").string();
  Fd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(sock);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);

  pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
    ::setenv("WATCHDOG_USEC", "1000000", 1);
    ::unsetenv("WATCHDOG_PID");
    auto n = ServiceNotify::from_environment(Role::Backup);  // before the filter, as in the node
    if (!install_syscall_filter()) ::_exit(90);
    n.on_state(Mode::Duplex, true);
    n.watchdog();
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  std::vector<std::string> got;
  char buf[256];
  ssize_t n;
  while ((n = ::recv(sock.get(), buf, sizeof buf, MSG_DONTWAIT)) > 0)
    got.emplace_back(buf, static_cast<size_t>(n));
  EXPECT_EQ(got, (std::vector<std::string>{"READY=1\nSTATUS=role backup, mode duplex, front",
                                           "WATCHDOG=1"}));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace us::sys
