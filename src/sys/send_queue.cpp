#include "sys/send_queue.hpp"

#include <cerrno>

namespace us::sys {

void SendQueue::push(int fd, std::span<const uint8_t> packet, const sockaddr_in& to) {
  push_built(fd, to, [&](std::vector<uint8_t>& out) {
    out.insert(out.end(), packet.begin(), packet.end());
  });
}

void SendQueue::flush(int fd) {
  if (entries_.empty()) return;
  // Built now, not on push: bytes_ may move while it grows.
  msgs_.assign(entries_.size(), mmsghdr{});
  iov_.resize(entries_.size());
  for (size_t i = 0; i < entries_.size(); ++i) {
    Entry& e = entries_[i];
    iov_[i] = {bytes_.data() + e.offset, e.size};
    msghdr& h = msgs_[i].msg_hdr;
    h.msg_name = &e.to;
    h.msg_namelen = e.to_len;
    h.msg_iov = &iov_[i];
    h.msg_iovlen = 1;
  }
  size_t done = 0;
  while (done < msgs_.size()) {
    int n = ::sendmmsg(fd, msgs_.data() + done, static_cast<unsigned>(msgs_.size() - done), 0);
    ++calls_;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
        break;  // full: drop the rest
      ++done;   // this one is refused (its destination, its size): drop it alone
      ++refused_;
      last_errno_ = errno;
      continue;
    }
    sent_ += static_cast<uint64_t>(n);
    done += static_cast<size_t>(n);
  }
  entries_.clear();
  bytes_.clear();
}

}  // namespace us::sys
