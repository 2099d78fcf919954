#include "node/control.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "node/fault.hpp"
#include "sys/fd.hpp"

namespace us::node {

using namespace std::chrono_literals;

namespace {
void send_line(int fd, const nlohmann::json& reply) {
  std::string out = reply.dump() + "\n";
  ::send(fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}
}  // namespace

Result<Ok, std::string> ControlServer::open(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  ::unlink(path.c_str());
  listener_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return Err{sys::errno_text(("node.control_socket: bind " + path.string()).c_str())};
  ::chmod(path.c_str(), 0600);
  ::listen(listener_.get(), 16);
  loop_.add(listener_.get(), EPOLLIN, [this](uint32_t) { on_accept(); });
  return Ok{};
}

// Each connection is read as it becomes readable, answered once its line is complete, and closed.
void ControlServer::on_accept() {
  for (;;) {
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    auto line = std::make_shared<std::string>();
    auto timer = std::make_shared<sys::EventLoop::TimerId>();
    auto done = [this, fd, timer] {
      loop_.cancel(*timer);
      loop_.remove(fd);
      ::close(fd);
    };
    *timer = loop_.after(2s, done);  // a client that never finishes its line
    loop_.add(fd, EPOLLIN, [this, fd, line, done](uint32_t) {
      char buf[512];
      for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
          line->append(buf, static_cast<size_t>(n));
          if (line->size() > 4096) return done();
          auto nl = line->find('\n');
          if (nl == std::string::npos) continue;
          auto request = nlohmann::json::parse(line->substr(0, nl), nullptr, false);
          send_line(fd, handler_(request, [fd](const nlohmann::json& r) { send_line(fd, r); }));
          return done();
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        return done();
      }
    });
  }
}

nlohmann::json answer_command(const nlohmann::json& req, const ControlServer::ReplyNow& reply_now,
                              const std::function<nlohmann::json()>& status,
                              const std::function<void()>& reset_timing) {
  std::string cmd = req.is_object() && req.contains("cmd") && req["cmd"].is_string()
                        ? req["cmd"].get<std::string>()
                        : "";
  if (cmd == "status") {
    auto reply = status();
    if (req.value("reset_timing", false)) reset_timing();
    return reply;
  }
  if (cmd == "fault") {
    std::string spec = req.value("point", "");
    if (spec.empty()) {
      fault::arm("", 1);
      return {{"ok", true}, {"armed", ""}};
    }
    if (fault::arm_from_spec(spec)) return {{"ok", true}, {"armed", fault::armed()}};
    return {{"ok", false}, {"error", "expected point[:nth]"}};
  }
  if (cmd == "crash") {
    reply_now({{"ok", true}});
    fault::crash_now("control command crash");
  }
  return {{"ok", false}, {"error", "unknown command; use status, fault, crash"}};
}

Result<nlohmann::json, std::string> control_request(const std::string& socket_path,
                                                    const nlohmann::json& request) {
  sys::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, socket_path.c_str(), sizeof a.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return Err{sys::errno_text(("no node at " + socket_path).c_str())};
  timeval tv{2, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out = request.dump() + "\n";
  if (::write(fd.get(), out.data(), out.size()) != static_cast<ssize_t>(out.size()))
    return Err{sys::errno_text("write")};
  std::string line;
  char ch;
  while (::read(fd.get(), &ch, 1) == 1 && ch != '\n') line.push_back(ch);
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded()) return Err{std::string("no reply from the node")};
  return j;
}

}  // namespace us::node
