// The replication channel: one TCP connection between the nodes' LAN addresses (the backup
// connects, the primary accepts), every frame authenticated (crypto/frame_auth). The first frame
// each way is a Hello under a fixed derived key; the rest use keys derived from both Hellos'
// nonces, one per direction, with a counter that must advance by one: a frame that is forged,
// replayed, reordered or reflected closes the channel. The channel is up once the peer's first
// frame under those keys (a Confirm) arrives: a recorded Hello played back by a host on the LAN
// cannot produce one. A connection that is not up within kHandshakeTimeout is closed, so a
// stranger that connects and stays silent cannot hold the primary's one channel.
#pragma once
#include <array>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "crypto/frame_auth.hpp"
#include "crypto/key.hpp"
#include "peer/messages.hpp"
#include "sys/event_loop.hpp"

namespace us::peer {

struct ChannelSettings {
  Role role;
  wire::Ipv4Addr local;
  wire::Ipv4Addr remote;
  uint16_t port = 7400;
  crypto::Key key;
  uint64_t boot_id = 0;
  std::function<Mode()> mode;  // sent in our Hello
  // Sent in our Hello (config::shared_settings); the peer's arrive in the Hello given to `up`.
  std::vector<std::pair<std::string, std::string>> shared = {};
};

class Channel {
 public:
  struct Events {
    // The handshake is done. Returns false to refuse this peer (its config differs): the channel
    // writes out our Hello, so the peer learns of the difference too, closes without `down`, and
    // waits for the next connection as after a failed attempt.
    std::function<bool(const Hello&)> up;
    std::function<void(Type, std::span<const uint8_t>)> message;
    std::function<void(const std::string& why)> down;
  };
  Channel(sys::EventLoop& loop, ChannelSettings s, Events ev);
  ~Channel();
  Result<Ok, std::string> start();
  bool up() const { return state_ == State::Up; }
  void send(Type type, std::span<const uint8_t> payload);
  // Reads whatever has arrived, outside the event loop's turn (before a liveness decision).
  void pump();
  void flush();
  // Blocks until every queued frame is in the kernel's send buffer (which delivers it even after
  // we exit), the channel fails, or `limit` passes. For a node that is about to stop; true if all
  // was written.
  bool drain(std::chrono::milliseconds limit);
  // After a failover: drops the connection to the peer that is gone (its TCP end may never say
  // so) and waits for the next one: the primary accepts again, the backup connects again, so a
  // restarted peer can rejoin. Quiet: `down` is not called.
  void reset(const std::string& why);
  // Backup, not up: the peer is heard again (a restarted primary), so try now rather than wait for
  // a connect that was aimed at the dead host to time out.
  void connect_now();
  size_t queued() const { return out_.size() - out_pos_; }
  uint64_t rejected() const { return rejected_; }
  // Hellos that failed authentication: with the same key (the datagrams pass) this means the peer
  // speaks another version of this protocol (the Hello's key is derived with a version label).
  uint64_t hellos_refused() const { return hellos_refused_; }

 private:
  enum class State { Idle, Connecting, HelloSent, Confirming, Up, Closed };
  void connect();
  void on_listen();
  void attach(sys::Fd fd);
  void on_event(uint32_t events);
  void on_bytes();
  void handle_frame(std::span<const uint8_t> frame);
  void on_hello(std::span<const uint8_t> frame);
  void fail(const std::string& why);
  void refuse_peer();
  void close_socket();  // the socket and its session keys
  void to_idle();       // and the buffers: no attempt under way, as at the start
  void update_interest();

  sys::EventLoop& loop_;
  ChannelSettings s_;
  Events ev_;
  State state_ = State::Idle;
  sys::Fd listener_, fd_;
  crypto::FrameAuth hello_auth_;
  std::optional<crypto::FrameAuth> send_auth_, recv_auth_;
  std::array<uint8_t, 16> my_nonce_{};
  std::optional<Hello> peer_hello_;  // Confirming: the peer's, given to `up` once confirmed
  uint64_t send_counter_ = 0, recv_counter_ = 0;
  std::vector<uint8_t> in_, out_, scratch_;
  size_t out_pos_ = 0;
  uint64_t rejected_ = 0, hellos_refused_ = 0;
  bool ever_up_ = false;
  uint64_t attempt_ = 0;  // the backup's connect attempts, so a stale timeout is recognised
  TimePoint attempt_started_{};
  uint64_t handshakes_ = 0;  // connections attached, so a stale handshake timeout is recognised
};

}  // namespace us::peer
