#include "peer/replication.hpp"

#include "core/log.hpp"
#include "peer/channel.hpp"

namespace us::peer {

bool ChannelLink::up() const {
  return c_.up();
}

void ChannelLink::send(Type type, std::span<const uint8_t> payload) {
  c_.send(type, payload);
}

void Replication::send(const ConnMessage& m) {
  if (!link_ || !link_->up()) return;
  scratch_.clear();
  encode(scratch_, m);
  link_->send(m.type, scratch_);
}

void Replication::send_has(const ConnKey& key, const HasReport& r) {
  has_extra_.clear();
  encode_has_extra(has_extra_, r);
  send({Type::Has, key, r.has.raw(), 0, has_extra_});
}

void Replication::send_adopt(const Adoption& a) {
  if (!link_ || !link_->up()) return;
  scratch_.clear();
  encode(scratch_, a);
  link_->send(Type::Adopt, scratch_);
}

void Replication::send_leaving() {
  if (link_ && link_->up()) link_->send(Type::Leaving, {});
}

void Replication::on_frame(Type type, std::span<const uint8_t> payload) {
  if (type == Type::Leaving) {
    if (h_.leaving) h_.leaving();
    return;
  }
  if (type == Type::Adopt) {
    auto a = decode_adoption(payload);
    if (!a) {
      ++malformed_;
      log::error({.event = "protocol_error", .reason = "malformed Adopt"}, "peer: malformed Adopt");
      return;
    }
    if (h_.adopt) h_.adopt(*a);
    return;
  }
  auto m = decode_conn(type, payload);
  if (!m) {
    ++malformed_;
    log::error({.event = "protocol_error", .reason = "malformed message"},
               "peer: malformed channel message type {}", static_cast<int>(type));
    return;
  }
  if (type == Type::Has) {
    if (!h_.has) return;
    auto r = decode_has(*m);
    if (!r) {
      ++malformed_;
      log::error({.event = "protocol_error", .conn = m->key, .reason = "malformed Has"},
                 "peer: malformed Has for {}", m->key.to_string());
      return;
    }
    h_.has(m->key, *r);
    return;
  }
  if (type == Type::AdoptRefused) {
    if (h_.adopt_refused) h_.adopt_refused(m->key);
    return;
  }
  if (type == Type::Adopted) {
    if (h_.adopted) h_.adopted(m->key);
    return;
  }
  if (h_.message) h_.message(*m);
}

}  // namespace us::peer
