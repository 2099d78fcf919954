#include "message/request_cache.hpp"

namespace us::message {

void RequestCache::offer_finishing(const ConnKey& key, bool in_partial_request) {
  if (full_for(key) && !finishing_ && in_partial_request) {
    finishing_ = key;
    paused_.erase(key);
  }
}

bool RequestCache::request_ended(const ConnKey& key) {
  if (!finishing(key)) return false;
  finishing_.reset();
  return true;
}

std::vector<ConnKey> RequestCache::take_resumable() {
  if (paused_.empty() || bytes_ >= limit_) return {};
  std::vector<ConnKey> out(paused_.begin(), paused_.end());
  paused_.clear();
  return out;
}

void RequestCache::forget(const ConnKey& key) {
  paused_.erase(key);
  if (finishing(key)) finishing_.reset();
}

}  // namespace us::message
