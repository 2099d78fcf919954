// The backup's request cache accounting, shared by all its connections (DESIGN.md section 3,
// flow control). No I/O, no clock: sessions add and drop bytes, the adapter asks whom to pause
// and whom to wake. Read session.hpp first; this is the one piece of state sessions share.
//
// The backup stops reading client bytes while the cache is full: what it does not hold it does
// not report (I1), so the primary does not acknowledge it and the client waits. Partial requests
// alone could fill the cache, and none of them could then complete and free it, so one connection
// at a time (the "finishing" one) may read past the limit to end the request it is in: the cache
// grows past the limit by at most that request.
#pragma once
#include <cstdint>
#include <optional>
#include <unordered_set>
#include <vector>

#include "core/vocabulary.hpp"

namespace us::message {

class RequestCache {
 public:
  explicit RequestCache(uint64_t limit) : limit_(limit) {}

  void add(uint64_t n) { bytes_ += n; }
  void drop(uint64_t n) { bytes_ -= n; }

  // A backup connection that is not serving may not read while this holds.
  bool full_for(const ConnKey& key) const {
    return bytes_ >= limit_ && !(finishing_ && *finishing_ == key);
  }
  // Before a read: a full cache gives its one finishing slot to a connection in a partial
  // request, if the slot is free. It is then no longer paused.
  void offer_finishing(const ConnKey& key, bool in_partial_request);
  // The connection's request ended (no partial request left): the slot is free again.
  // True if `key` held it.
  bool request_ended(const ConnKey& key);
  bool finishing(const ConnKey& key) const { return finishing_ && *finishing_ == key; }

  // The adapter left `key` without read interest because the cache is full. True the first time
  // (the caller logs it once).
  bool pause(const ConnKey& key) { return paused_.insert(key).second; }
  // Every paused reader once the cache is below its limit again (they are no longer paused);
  // empty otherwise. The adapter recomputes their read interest.
  std::vector<ConnKey> take_resumable();
  // The connection ends: it holds no slot and is not waiting.
  void forget(const ConnKey& key);

  uint64_t bytes() const { return bytes_; }
  uint64_t limit() const { return limit_; }
  size_t paused() const { return paused_.size(); }

 private:
  uint64_t limit_;
  uint64_t bytes_ = 0;
  std::optional<ConnKey> finishing_;
  std::unordered_set<ConnKey, ConnKeyHash> paused_;
};

}  // namespace us::message
