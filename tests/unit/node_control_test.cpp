#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "node/control.hpp"
#include "node/fault.hpp"

namespace us::node {
namespace {

// The command side of the control socket, without a socket. `crash` is left out: it kills the
// process (the lab tests drive it).
struct ControlCommands : ::testing::Test {
  std::vector<std::string> calls;
  std::vector<nlohmann::json> sent_now;

  nlohmann::json ask(const nlohmann::json& req) {
    return answer_command(
        req, [this](const nlohmann::json& r) { sent_now.push_back(r); },
        [this] {
          calls.push_back("status");
          return nlohmann::json{{"role", "primary"}};
        },
        [this] { calls.push_back("reset"); });
  }
  void TearDown() override { fault::arm("", 1); }
};

TEST_F(ControlCommands, Status_AnswersTheStatus) {
  EXPECT_EQ(ask({{"cmd", "status"}}), (nlohmann::json{{"role", "primary"}}));
  EXPECT_EQ(calls, (std::vector<std::string>{"status"}));
  EXPECT_TRUE(sent_now.empty());
}

TEST_F(ControlCommands, Status_ResetTimingAfterTheAnswerIsTaken) {
  ask({{"cmd", "status"}, {"reset_timing", true}});
  EXPECT_EQ(calls, (std::vector<std::string>{"status", "reset"}));
  calls.clear();
  ask({{"cmd", "status"}, {"reset_timing", false}});
  EXPECT_EQ(calls, (std::vector<std::string>{"status"}));
}

TEST_F(ControlCommands, Fault_ArmsAndDisarms) {
  EXPECT_EQ(ask({{"cmd", "fault"}, {"point", "primary.reply_written:4"}}),
            (nlohmann::json{{"ok", true}, {"armed", "primary.reply_written:4"}}));
  EXPECT_EQ(fault::armed(), "primary.reply_written:4");
  EXPECT_EQ(ask({{"cmd", "fault"}, {"point", "backup.before_relay"}}),
            (nlohmann::json{{"ok", true}, {"armed", "backup.before_relay:1"}}));
  EXPECT_EQ(ask({{"cmd", "fault"}, {"point", ""}}), (nlohmann::json{{"ok", true}, {"armed", ""}}));
  EXPECT_EQ(fault::armed(), "");
}

TEST_F(ControlCommands, Fault_MalformedSpecIsRefusedAndArmsNothing) {
  for (const char* spec : {"primary.before_ack:0", "primary.before_ack:x", ":3"}) {
    EXPECT_EQ(ask({{"cmd", "fault"}, {"point", spec}}),
              (nlohmann::json{{"ok", false}, {"error", "expected point[:nth]"}}))
        << spec;
  }
  EXPECT_EQ(fault::armed(), "");
}

TEST_F(ControlCommands, UnknownOrMalformedRequestsAreRefused) {
  const nlohmann::json refused = {{"ok", false},
                                  {"error", "unknown command; use status, fault, crash"}};
  EXPECT_EQ(ask({{"cmd", "reboot"}}), refused);
  EXPECT_EQ(ask({{"cmd", 5}}), refused);
  EXPECT_EQ(ask(nlohmann::json::array({1, 2})), refused);
  EXPECT_EQ(ask(nlohmann::json::parse("{not json", nullptr, false)), refused);
  EXPECT_TRUE(calls.empty());
}

}  // namespace
}  // namespace us::node
