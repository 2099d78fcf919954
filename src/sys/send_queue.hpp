// Outgoing datagrams and raw packets queued during one batch of the event loop and sent with
// sendmmsg(2): one system call for up to kMaxQueued of them instead of one each. The owner
// flushes at the end of each batch it handles (and before the process dies at a fault point),
// so nothing waits longer than the batch that made it.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

namespace us::sys {

class SendQueue {
 public:
  static constexpr size_t kMaxQueued = 64;

  // Copies `packet` (to `to`); sends the queue first if it is full.
  void push(int fd, std::span<const uint8_t> packet, const sockaddr_in& to);
  // The same, the datagram built in place by `fill` (which appends to the buffer it is given).
  template <class Fill>
  void push_built(int fd, const sockaddr_in& to, Fill&& fill) {
    push_built_to(fd, &to, sizeof to, std::forward<Fill>(fill));
  }
  // To any address (an AF_PACKET socket's sockaddr_ll).
  template <class Fill>
  void push_built_to(int fd, const void* to, socklen_t to_len, Fill&& fill) {
    if (count() == kMaxQueued) flush(fd);
    size_t begin = bytes_.size();
    fill(bytes_);
    Entry e{begin, bytes_.size() - begin, {}, to_len};
    std::memcpy(&e.to, to, std::min<size_t>(to_len, sizeof e.to));
    entries_.push_back(e);
  }
  // Sends everything queued. What the socket refuses (a full buffer) is dropped, as a sendto
  // would have been: TCP above recovers as from a loss on the wire.
  void flush(int fd);
  size_t count() const { return entries_.size(); }
  uint64_t calls() const { return calls_; }         // sendmmsg calls made
  uint64_t sent() const { return sent_; }           // packets those calls sent
  uint64_t refused() const { return refused_; }     // dropped alone: the socket refused them
  int last_refusal() const { return last_errno_; }  // errno of the last of those

 private:
  struct Entry {
    size_t offset, size;
    sockaddr_storage to;
    socklen_t to_len;
  };
  std::vector<uint8_t> bytes_;
  std::vector<Entry> entries_;
  std::vector<mmsghdr> msgs_;
  std::vector<iovec> iov_;
  uint64_t calls_ = 0, sent_ = 0, refused_ = 0;
  int last_errno_ = 0;
};

}  // namespace us::sys
