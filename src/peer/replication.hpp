// The per-connection end of the replication channel: what the layers send to the peer goes out
// here encoded, and what arrives is decoded and handed to its owner, so a reply frame goes
// message layer -> peer -> wire without passing through the node. Read peer/messages.hpp and
// peer/channel.hpp first.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "peer/messages.hpp"

namespace us::peer {

class Channel;

// Where encoded messages go: the replication channel, or a recorder in tests.
class FrameLink {
 public:
  virtual ~FrameLink() = default;
  virtual bool up() const = 0;
  virtual void send(Type type, std::span<const uint8_t> payload) = 0;
};

// A FrameLink over the real channel.
class ChannelLink final : public FrameLink {
 public:
  explicit ChannelLink(Channel& c) : c_(c) {}
  bool up() const override;
  void send(Type type, std::span<const uint8_t> payload) override;

 private:
  Channel& c_;
};

class Replication final : public ConnSender {
 public:
  struct Handlers {
    // The primary's packet layer: the backup holds the client's stream up to a seq (I1). Empty
    // on the backup, which never receives one: a Has there is dropped.
    std::function<void(const ConnKey&, const HasReport&)> has;
    // The message layer: every other per-connection message.
    std::function<void(const ConnMessage&)> message;
    // The mode machine: the peer stops by plan (Leaving); what it replicated before is all here.
    std::function<void()> leaving;
    // The joiner: hold this connection of the survivor's too (Adopt). The survivor: the joiner
    // could not (AdoptRefused), so the connection is served alone again.
    std::function<void(const Adoption&)> adopt;
    std::function<void(const ConnKey&)> adopt_refused;
    std::function<void(const ConnKey&)> adopted;  // the survivor: the joiner holds it now
  };
  explicit Replication(Handlers h) : h_(std::move(h)) {}

  // Until attached, and while the link is down, messages are dropped: the channel is in order,
  // and a message lost with it is recovered by the layers after the peer's failure or return.
  void attach(FrameLink& link) { link_ = &link; }

  void send(const ConnMessage& m) override;
  // The backup's report of what it holds (I1), as a Has message.
  void send_has(const ConnKey& key, const HasReport& r);
  void send_adopt(const Adoption& a);
  void send_adopt_refused(const ConnKey& key) { send({Type::AdoptRefused, key, 0, 0, {}}); }
  void send_adopted(const ConnKey& key) { send({Type::Adopted, key, 0, 0, {}}); }
  // Tells the peer this node stops now: after every message already sent, in channel order.
  void send_leaving();

  // A frame that arrived on the channel. A malformed one is logged, counted and dropped.
  void on_frame(Type type, std::span<const uint8_t> payload);
  uint64_t malformed() const { return malformed_; }

 private:
  Handlers h_;
  FrameLink* link_ = nullptr;
  std::vector<uint8_t> scratch_, has_extra_;
  uint64_t malformed_ = 0;
};

}  // namespace us::peer
