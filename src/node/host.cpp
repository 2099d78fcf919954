#include "node/host.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <linux/capability.h>

#include <fstream>

#include "peer/datagram.hpp"
#include "sys/seccomp.hpp"

namespace us::node {

namespace {
// Relay datagram overhead on the LAN: IP + UDP headers, frame header and tag.
constexpr int kRelayOverhead = 20 + 8 + static_cast<int>(peer::kDatagramOverhead);

Result<sys::LinkInfo, std::string> check_host(const config::Config& cfg) {
  auto li = sys::link_info(cfg.service.interface);
  if (!li) return Err{"service.interface: " + li.error()};
  // Offloads may stay on: the tap cuts merged packets and completes checksums (wire/offload.hpp).
  auto offloads = sys::enabled_offloads(cfg.service.interface);
  std::string list;
  for (auto& o : offloads) list += (list.empty() ? "" : ", ") + o;
  spdlog::info(
      "{}: offloads {}", cfg.service.interface,
      list.empty() ? std::string("off") : "on (" + list + "): super-segments are cut here");
  if (cfg.tun.mtu + kRelayOverhead > li->mtu)
    return Err{"tun.mtu: " + std::to_string(cfg.tun.mtu) + " + relay overhead " +
               std::to_string(kRelayOverhead) + " exceeds the MTU " + std::to_string(li->mtu) +
               " of " + cfg.service.interface};
  std::ifstream fwd("/proc/sys/net/ipv4/ip_forward");
  int v = 0;
  if (fwd >> v && v != 0)
    return Err{
        "net.ipv4.ip_forward is 1: the kernel would forward the advertised address's "
        "traffic itself; set it to 0"};
  return *li;
}
}  // namespace

void raise_descriptor_limit() {
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
  }
}

sys::Fd on_stop_signals(sys::EventLoop& loop, std::function<void()> stop) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  sys::Fd fd(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  loop.add(fd.get(), EPOLLIN, [raw = fd.get(), stop = std::move(stop)](uint32_t) {
    signalfd_siginfo si{};
    if (::read(raw, &si, sizeof si) <= 0) return;
    spdlog::info("node: signal {}: stopping", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
    stop();
  });
  return fd;
}

Result<Devices, std::string> open_devices(const config::Config& cfg) {
  auto link = check_host(cfg);
  if (!link) return Err{link.error()};
  auto tap = sys::LanTap::open(*link, cfg.service.advertised);
  if (!tap) return Err{tap.error()};
  auto raw = sys::RawSender::open();
  if (!raw) return Err{raw.error()};
  auto tun = sys::Tun::open(cfg.tun.name, cfg.tun.address, cfg.tun.prefix, cfg.tun.mtu);
  if (!tun) return Err{"tun: " + tun.error()};
  Devices d{*link, std::move(*tap), std::move(*raw), std::move(*tun), {}, {}};
  auto sender = sys::LanSender::open(*link);
  auto hops = sys::NextHops::open(link->index);
  if (sender && hops) {
    d.lan_sender.emplace(std::move(*sender));
    d.next_hops.emplace(std::move(*hops));
  } else {
    spdlog::warn("{}: super-segments will be cut here and sent one packet each: {}",
                 cfg.service.interface, sender ? hops.error() : sender.error());
  }
  return d;
}

Result<sys::Account, std::string> run_as(const config::Config& cfg) {
  auto a = sys::find_account(cfg.node.user);
  if (!a) return Err{"node.user: " + a.error()};
  return *a;
}

Result<Ok, std::string> give_up_privileges(const sys::Account& account) {
  if (account.uid == 0) {
    spdlog::warn(
        "node: running as {} with every capability and no system-call filter (node.user = "
        "\"{}\")",
        account.name, account.name);
    return Ok{};
  }
  // What the serving node still does that needs privilege: only the fault points' link-down
  // (fault::crash_now). Every socket, the TUN and the control socket are open already; the peer
  // channel reconnects from an ephemeral port; nothing is re-created at a rejoin or takeover, and
  // gratuitous ARP goes out of the AF_PACKET socket opened at start.
  static constexpr int kKeep[] = {CAP_NET_ADMIN};
  if (auto d = sys::drop_to(account, kKeep); !d) return Err{"cannot drop privileges: " + d.error()};
#if defined(__SANITIZE_ADDRESS__)
  // The leak check at exit clones a tracer that ptraces this process: it must stay dumpable, and
  // the filter may only log what the sanitizer runtime calls (the release build stops on it).
  ::prctl(PR_SET_DUMPABLE, 1L, 0L, 0L, 0L);
  constexpr auto kOnRefused = sys::OnRefused::Log;
  constexpr const char* kRefusals = "; sanitizer build: refusals logged, not fatal";
#else
  constexpr auto kOnRefused = sys::OnRefused::Stop;
  constexpr const char* kRefusals = "";
#endif
  auto filter = sys::install_syscall_filter(kOnRefused);
  if (!filter) return Err{"cannot load the system-call filter: " + filter.error()};
  spdlog::info(
      "node: running as {} (uid {}, gid {}), capabilities kept: {} (fault points take the link "
      "down), no_new_privs, seccomp on ({} system calls allowed, {} of them with restricted "
      "arguments; {} BPF instructions{})",
      account.name, account.uid, account.gid, sys::capability_names(kKeep),
      sys::allowed_syscalls().size() + sys::restricted_syscalls().size(),
      sys::restricted_syscalls().size(), *filter, kRefusals);
  return Ok{};
}

}  // namespace us::node
