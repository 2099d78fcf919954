#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include <openssl/evp.h>

#include "crypto/frame_auth.hpp"
#include "crypto/key.hpp"

namespace us::crypto {
namespace {

Key key_of(uint8_t fill) {
  Key k;
  k.fill(fill);
  return k;
}

std::vector<uint8_t> bytes(std::string_view s) {
  return {s.begin(), s.end()};
}

TEST(KeyTest, GenerateParseRoundTrip) {
  std::string hex = generate_key_hex();
  ASSERT_EQ(hex.size(), 64u);
  for (char c : hex) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << hex;
  auto k = parse_key(hex);
  ASSERT_TRUE(k.ok()) << k.error();
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string back;
  for (uint8_t b : *k) {
    back.push_back(kDigits[b >> 4]);
    back.push_back(kDigits[b & 0xf]);
  }
  EXPECT_EQ(back, hex);
  EXPECT_NE(generate_key_hex(), hex);  // 2^-256 chance of a false failure
}

TEST(KeyTest, ParseAcceptsWhitespaceAndUppercase) {
  std::string hex = "000102030405060708090A0B0C0D0E0F101112131415161718191a1b1c1d1e1f";
  auto k = parse_key("  \t" + hex + "\r\n\n");
  ASSERT_TRUE(k.ok()) << k.error();
  for (size_t i = 0; i < k->size(); ++i) EXPECT_EQ((*k)[i], i);
}

TEST(KeyTest, ParseRejectsBadKeys) {
  const std::string good = std::string(64, 'a');
  struct Bad {
    std::string text, why;
  };
  const Bad cases[] = {
      {"", "key is empty"},
      {" \n", "key is empty"},
      {good.substr(0, 62), "key must be 64 hex characters (32 bytes), got 62"},
      {good + "aa", "key must be 64 hex characters (32 bytes), got 66"},
      {good.substr(0, 10) + "z" + good.substr(11),
       "key has a non-hex character 'z' at position 10"},
      {good.substr(0, 32) + " " + good.substr(32),
       "key has a non-hex character 0x20 at position 32"},
      {"0x" + good.substr(2), "key has a non-hex character 'x' at position 1"},
  };
  for (const Bad& b : cases) {
    auto k = parse_key(b.text);
    ASSERT_FALSE(k.ok()) << b.text;
    EXPECT_EQ(k.error(), b.why);
  }
}

TEST(KeyTest, DeriveKeyDeterministicAndLabelSensitive) {
  const Key master = key_of(7);
  const std::vector<uint8_t> ctx = {1, 2, 3};
  EXPECT_EQ(derive_key(master, "isn"), derive_key(master, "isn"));
  EXPECT_EQ(derive_key(master, "isn", ctx), derive_key(master, "isn", ctx));
  EXPECT_NE(derive_key(master, "isn"), derive_key(master, "frame"));
  EXPECT_NE(derive_key(master, "isn"), derive_key(master, "isn", ctx));
  EXPECT_NE(derive_key(master, "isn"), derive_key(key_of(8), "isn"));
  EXPECT_NE(derive_key(master, "isn"), master);
}

TEST(KeyTest, DeriveKeyKnownAnswer) {
  // RFC 4868 section 2.7.2.1, test case 1: HMAC-SHA256(key = 32 x 0x0b, "Hi There").
  Key master = key_of(0x0b);
  Key out = derive_key(master, "Hi ", bytes("There"));
  // Same as with the whole message in the label: the concatenation is what is MACed.
  EXPECT_EQ(out, derive_key(master, "Hi There"));
  const uint8_t expected[] = {0x19, 0x8a, 0x60, 0x7e, 0xb4, 0x4b, 0xfb, 0xc6, 0x99, 0x03, 0xa0,
                              0xf1, 0xcf, 0x2b, 0xbd, 0xc5, 0xba, 0x0a, 0xa3, 0xf3, 0xd9, 0xae,
                              0x3c, 0x1c, 0x7a, 0x3b, 0x16, 0x96, 0xa0, 0xb6, 0x8c, 0xf7};
  EXPECT_EQ(0, std::memcmp(out.data(), expected, sizeof expected));
}

TEST(FrameAuthTest, SealOpenRoundTrip) {
  FrameAuth auth(key_of(1));
  const auto payload = bytes("hello, backup");
  std::vector<uint8_t> frame;
  auth.seal(frame, 42, 0x0102030405060708ull, payload);
  ASSERT_EQ(frame.size(), kFrameHeader + payload.size() + kFrameTag);
  // Header layout, to the byte.
  const uint8_t header[] = {1, 42, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 13};
  EXPECT_EQ(0, std::memcmp(frame.data(), header, sizeof header));

  auto opened = auth.open(frame);
  ASSERT_TRUE(opened.ok()) << to_string(opened.error());
  EXPECT_EQ(opened->type, 42);
  EXPECT_EQ(opened->counter, 0x0102030405060708ull);
  EXPECT_EQ(std::vector<uint8_t>(opened->payload.begin(), opened->payload.end()), payload);
  EXPECT_EQ(opened->payload.data(), frame.data() + kFrameHeader);
}

TEST(FrameAuthTest, EmptyPayloadAndAppend) {
  FrameAuth auth(key_of(1));
  std::vector<uint8_t> stream;
  auth.seal(stream, 1, 0, {});
  auth.seal(stream, 2, 1, bytes("xy"));
  ASSERT_EQ(stream.size(), 2 * (kFrameHeader + kFrameTag) + 2);
  std::span<const uint8_t> s(stream);
  auto first = auth.open(s.first(kFrameHeader + kFrameTag));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->type, 1);
  EXPECT_TRUE(first->payload.empty());
  auto second = auth.open(s.subspan(kFrameHeader + kFrameTag));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->counter, 1u);
  EXPECT_EQ(second->payload.size(), 2u);
}

TEST(FrameAuthTest, TagMatchesHmacDefinition) {
  // tag = first 16 bytes of HMAC-SHA256(key, header || payload); derive_key is that HMAC.
  const Key k = key_of(9);
  FrameAuth auth(k);
  std::vector<uint8_t> frame;
  auth.seal(frame, 3, 5, bytes("abc"));
  const size_t body = frame.size() - kFrameTag;
  Key mac = derive_key(k, "", std::span<const uint8_t>(frame).first(body));
  EXPECT_EQ(0, std::memcmp(mac.data(), frame.data() + body, kFrameTag));
}

// One HMAC state serves every frame, reset to the key between them: nothing of a frame may
// leak into the next one's tag.
TEST(FrameAuthTest, SuccessiveTags_EachMatchesTheDefinition) {
  const Key k = key_of(4);
  FrameAuth auth(k);
  for (const char* payload : {"a much longer first payload", "b", "", "c"}) {
    std::vector<uint8_t> frame;
    auth.seal(frame, 1, 2, bytes(payload));
    const size_t body = frame.size() - kFrameTag;
    Key mac = derive_key(k, "", std::span<const uint8_t>(frame).first(body));
    EXPECT_EQ(0, std::memcmp(mac.data(), frame.data() + body, kFrameTag)) << payload;
    EXPECT_TRUE(auth.open(frame).ok()) << payload;
  }
}

// The GMAC tag, from its definition: AES-256-GCM with IV = 4 zero bytes + the counter (big
// endian), the frame without its tag as associated data, nothing encrypted.
std::vector<uint8_t> gmac_definition(const Key& k, uint64_t counter, std::span<const uint8_t> aad) {
  uint8_t iv[12] = {};
  for (int i = 0; i < 8; ++i) iv[4 + i] = static_cast<uint8_t>(counter >> (56 - 8 * i));
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  int n = 0;
  std::vector<uint8_t> tag(16);
  EXPECT_EQ(EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), nullptr, k.data(), iv), 1);
  EXPECT_EQ(EVP_EncryptUpdate(c, nullptr, &n, aad.data(), static_cast<int>(aad.size())), 1);
  EXPECT_EQ(EVP_EncryptFinal_ex(c, nullptr, &n), 1);
  EXPECT_EQ(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag.data()), 1);
  EVP_CIPHER_CTX_free(c);
  return tag;
}

TEST(FrameAuthTest, Gmac_SuccessiveTagsMatchTheDefinitionAndOpen) {
  const Key k = key_of(6);
  FrameAuth auth(k, Mac::Gmac);
  uint64_t counter = 1;
  for (const char* payload : {"a much longer first payload", "b", "", "c"}) {
    std::vector<uint8_t> frame;
    auth.seal(frame, 3, counter, bytes(payload));
    const size_t body = frame.size() - kFrameTag;
    auto want = gmac_definition(k, counter, std::span<const uint8_t>(frame).first(body));
    EXPECT_EQ(0, std::memcmp(want.data(), frame.data() + body, kFrameTag)) << payload;
    auto opened = auth.open(frame);
    ASSERT_TRUE(opened.ok()) << payload;
    EXPECT_EQ(opened->counter, counter);
    EXPECT_EQ(std::string(opened->payload.begin(), opened->payload.end()), payload);
    ++counter;
  }
}

TEST(FrameAuthTest, Gmac_RejectsEveryBitFlipAnotherKeyAndAnHmacFrame) {
  FrameAuth auth(key_of(1), Mac::Gmac);
  std::vector<uint8_t> frame;
  auth.seal(frame, 7, 99, bytes("payload bytes"));
  for (size_t i = 0; i < frame.size() * 8; ++i) {
    std::vector<uint8_t> bad = frame;
    bad[i / 8] ^= static_cast<uint8_t>(1u << (i % 8));
    ASSERT_FALSE(auth.open(bad).ok()) << "bit " << i;
  }
  EXPECT_FALSE(FrameAuth(key_of(2), Mac::Gmac).open(frame).ok());
  std::vector<uint8_t> hmac;
  FrameAuth(key_of(1)).seal(hmac, 7, 99, bytes("payload bytes"));
  EXPECT_FALSE(auth.open(hmac).ok());
  FrameAuth copy = auth;
  EXPECT_TRUE(copy.open(frame).ok());
}

TEST(FrameAuthTest, EveryBitFlipRejected) {
  FrameAuth auth(key_of(1));
  std::vector<uint8_t> frame;
  auth.seal(frame, 7, 99, bytes("payload bytes"));
  for (size_t i = 0; i < frame.size() * 8; ++i) {
    std::vector<uint8_t> bad = frame;
    bad[i / 8] ^= static_cast<uint8_t>(1u << (i % 8));
    auto r = auth.open(bad);
    ASSERT_FALSE(r.ok()) << "bit " << i;
    // Flips in the version/reserved/length fields are caught before the MAC.
    const size_t byte = i / 8;
    AuthError want = AuthError::BadTag;
    if (byte == 0 || byte == 2 || byte == 3) want = AuthError::BadVersion;
    if (byte >= 12 && byte < 16) want = AuthError::BadLength;
    EXPECT_EQ(r.error(), want) << "bit " << i << ": " << to_string(r.error());
  }
}

TEST(FrameAuthTest, WrongKeyRejected) {
  std::vector<uint8_t> frame;
  FrameAuth(key_of(1)).seal(frame, 1, 1, bytes("x"));
  auto r = FrameAuth(key_of(2)).open(frame);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), AuthError::BadTag);
}

TEST(FrameAuthTest, TruncatedAndExtendedRejected) {
  FrameAuth auth(key_of(1));
  std::vector<uint8_t> frame;
  auth.seal(frame, 1, 1, bytes("some payload"));
  std::span<const uint8_t> f(frame);
  for (size_t n = 0; n < frame.size(); ++n) {
    auto r = auth.open(f.first(n));
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.error(), n < kFrameHeader + kFrameTag ? AuthError::TooShort : AuthError::BadLength)
        << n;
  }
  std::vector<uint8_t> longer = frame;
  longer.push_back(0);
  auto r = auth.open(longer);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), AuthError::BadLength);
}

TEST(FrameAuthTest, FrameSize) {
  FrameAuth auth(key_of(1));
  std::vector<uint8_t> frame;
  auth.seal(frame, 1, 1, std::vector<uint8_t>(300, 0xaa));
  std::span<const uint8_t> f(frame);
  for (size_t n = 0; n < kFrameHeader; ++n) EXPECT_FALSE(FrameAuth::frame_size(f.first(n))) << n;
  for (size_t n = kFrameHeader; n <= frame.size(); ++n) {
    auto size = FrameAuth::frame_size(f.first(n));
    ASSERT_TRUE(size);
    EXPECT_EQ(*size, frame.size());
  }
  // Largest declared length does not overflow.
  std::vector<uint8_t> huge(kFrameHeader, 0);
  huge[12] = huge[13] = huge[14] = huge[15] = 0xff;
  EXPECT_EQ(FrameAuth::frame_size(huge), kFrameHeader + 0xffffffffull + kFrameTag);
}

TEST(FrameAuthTest, CopiesAreIndependent) {
  FrameAuth a(key_of(1));
  FrameAuth b = a;
  FrameAuth c(key_of(2));
  c = a;
  FrameAuth d = std::move(c);
  std::vector<uint8_t> fa, fb, fd;
  a.seal(fa, 1, 1, bytes("x"));
  b.seal(fb, 1, 1, bytes("x"));
  d.seal(fd, 1, 1, bytes("x"));
  EXPECT_EQ(fa, fb);
  EXPECT_EQ(fa, fd);
  EXPECT_TRUE(b.open(fa).ok());
}

TEST(FrameAuthTest, ErrorNames) {
  std::set<std::string> names;
  for (AuthError e :
       {AuthError::TooShort, AuthError::BadVersion, AuthError::BadLength, AuthError::BadTag})
    names.insert(to_string(e));
  EXPECT_EQ(names.size(), 4u);
}

}  // namespace
}  // namespace us::crypto
