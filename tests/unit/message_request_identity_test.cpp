// The client's identity and request ids (src/message/request_identity.hpp): what is added to a
// request head and to an upstream connection, to the byte.
#include "message/request_identity.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "crypto/request_id.hpp"

namespace us::message {
namespace {

const ConnKey kKey{wire::Ipv4Addr(198, 18, 0, 2), 40000, 5000};
const wire::SeqNum kStart(5001);

crypto::Key master(uint8_t fill) {
  crypto::Key k{};
  k.fill(fill);
  return k;
}

Settings settings(Settings::ClientAddress mode, std::string header, uint8_t key = 7) {
  Settings s;
  s.client_address = mode;
  s.request_id_header = std::move(header);
  s.request_id = [mac = crypto::RequestIdMac(master(key))](const ConnKey& k, wire::SeqNum start,
                                                           uint64_t index) {
    return mac(k, start, index);
  };
  s.advertised = {wire::Ipv4Addr(198, 18, 0, 100), 80};
  return s;
}

TEST(RequestIdentity, Off_NoEditsNoPreface) {
  RequestIdentity id(settings(Settings::ClientAddress::None, ""));
  EXPECT_FALSE(id.edits_heads());
  EXPECT_TRUE(id.strip().empty());
  std::string out;
  id.append_fields(kKey, kStart, 0, out);
  id.append_preface(kKey, out);
  EXPECT_EQ(out, "");
}

TEST(RequestIdentity, Id_SameInputsSameBytes) {
  RequestIdentity a(settings(Settings::ClientAddress::None, "Request-Id"));
  RequestIdentity b(settings(Settings::ClientAddress::None, "Request-Id"));  // the other node
  const std::string id = a.request_id(kKey, kStart, 3);
  EXPECT_EQ(id, b.request_id(kKey, kStart, 3));
  ASSERT_EQ(id.size(), 32u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
}

// Every input of the derivation changes the id: the index, the stream's start (a connection
// protected again after a rejoin restarts its indices), each part of the connection's name, and
// the key (a client without it cannot compute one).
TEST(RequestIdentity, Id_EachInputChangesIt) {
  RequestIdentity id(settings(Settings::ClientAddress::None, "Request-Id"));
  std::set<std::string> ids;
  for (uint64_t i = 0; i < 100; ++i) ids.insert(id.request_id(kKey, kStart, i));
  EXPECT_EQ(ids.size(), 100u);
  const std::string base = id.request_id(kKey, kStart, 0);
  EXPECT_NE(base, id.request_id(kKey, kStart + 1000, 0));
  EXPECT_NE(base, id.request_id({wire::Ipv4Addr(198, 18, 0, 3), 40000, 5000}, kStart, 0));
  EXPECT_NE(base, id.request_id({kKey.ip, 40001, 5000}, kStart, 0));
  EXPECT_NE(base, id.request_id({kKey.ip, 40000, 5001}, kStart, 0));
  RequestIdentity other_key(settings(Settings::ClientAddress::None, "Request-Id", 8));
  EXPECT_NE(base, other_key.request_id(kKey, kStart, 0));
}

TEST(RequestIdentity, RequestIdHeader_FieldLineAndStrip) {
  RequestIdentity id(settings(Settings::ClientAddress::None, "Idempotency-Key"));
  EXPECT_TRUE(id.edits_heads());
  ASSERT_EQ(id.strip().size(), 1u);
  EXPECT_EQ(id.strip()[0], "idempotency-key");
  std::string out;
  id.append_fields(kKey, kStart, 2, out);
  EXPECT_EQ(out, "Idempotency-Key: " + id.request_id(kKey, kStart, 2) + "\r\n");
}

TEST(RequestIdentity, XForwardedFor_BothFieldsAndTheIdLast) {
  RequestIdentity id(settings(Settings::ClientAddress::XForwardedFor, "Request-Id"));
  EXPECT_TRUE(id.edits_heads());
  EXPECT_EQ(std::vector<std::string>(id.strip().begin(), id.strip().end()),
            (std::vector<std::string>{"request-id", "x-real-ip"}));
  std::string out;
  id.append_fields(kKey, kStart, 0, out);
  EXPECT_EQ(out, "X-Forwarded-For: 198.18.0.2\r\nX-Real-IP: 198.18.0.2\r\nRequest-Id: " +
                     id.request_id(kKey, kStart, 0) + "\r\n");
  std::string preface;
  id.append_preface(kKey, preface);
  EXPECT_EQ(preface, "");
}

// haproxy's proxy-protocol.txt, 2.2: signature, \x21 (v2, PROXY), \x11 (TCP over IPv4),
// length 12, source 198.18.0.2, destination 198.18.0.100, ports 40000 and 80.
TEST(RequestIdentity, ProxyV2_HeaderBytes) {
  RequestIdentity id(settings(Settings::ClientAddress::ProxyV2, ""));
  EXPECT_FALSE(id.edits_heads());
  std::string out;
  id.append_preface(kKey, out);
  const std::string want(
      "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"
      "\x21\x11\x00\x0C"
      "\xC6\x12\x00\x02"
      "\xC6\x12\x00\x64"
      "\x9C\x40"
      "\x00\x50",
      kProxyV2Size);
  EXPECT_EQ(out, want);
  std::string fields;
  id.append_fields(kKey, kStart, 0, fields);
  EXPECT_EQ(fields, "");
}

}  // namespace
}  // namespace us::message
