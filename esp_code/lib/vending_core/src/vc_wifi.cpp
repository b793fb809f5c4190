#include "vc_wifi.h"

#include <stdio.h>
#include <string.h>

#include "vc_json.h"
#include "vc_crypto.h"

namespace vending {

const char kPlainRequest[] = "DISCOVER_FLASK_SERVER";
const char kLegacyRequest[] = "ESP32_DISCOVERY_REQUEST";
const char kAuthRequest[] = "VENDING_DISCOVER_V2";
const char kAuthReply[] = "VENDING_SERVER_V2";

namespace {

bool isIdChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == ':' || c == '-';
}

bool isLowerHex(const char* text, size_t len) {
  if (strlen(text) != len) return false;
  for (size_t i = 0; i < len; ++i) {
    char c = text[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// A dotted quad with no leading zeros (one spelling only), copied to ip[16].
bool parseIpv4(const char* p, size_t n, char ip[16]) {
  if (n == 0 || n > 15) return false;
  int octets = 0;
  size_t digits = 0;
  unsigned value = 0;
  for (size_t i = 0; i <= n; ++i) {
    char c = i < n ? p[i] : '.';
    if (c >= '0' && c <= '9') {
      if (digits == 1 && value == 0) return false;
      value = value * 10 + static_cast<unsigned>(c - '0');
      if (++digits > 3 || value > 255) return false;
    } else if (c == '.') {
      if (digits == 0) return false;
      ++octets;
      digits = 0;
      value = 0;
    } else {
      return false;
    }
  }
  if (octets != 4) return false;
  memcpy(ip, p, n);
  ip[n] = '\0';
  return true;
}

bool parsePrefixed(const char* prefix, const char* reply, size_t len, char ip[16]) {
  size_t pn = strlen(prefix);
  while (len > 0 && (reply[len - 1] == '\n' || reply[len - 1] == '\r' || reply[len - 1] == ' ')) {
    --len;
  }
  if (len <= pn || memcmp(reply, prefix, pn) != 0) return false;
  return parseIpv4(reply + pn, len - pn, ip);
}

// Appends parts to out; false when they do not fit (terminator included).
bool join(const char* const* parts, size_t count, char* out, size_t cap, size_t* len) {
  size_t at = 0;
  for (size_t i = 0; i < count; ++i) {
    size_t n = strlen(parts[i]);
    if (at + n + 1 > cap) return false;
    memcpy(out + at, parts[i], n);
    at += n;
  }
  out[at] = '\0';
  *len = at;
  return true;
}

void bodyHash(const uint8_t* body, size_t len, char out[65]) {
  uint8_t digest[32];
  sha256(body, len, digest);
  toHex(digest, 32, out);
}

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

}  // namespace

bool isDeviceId(const char* text) {
  size_t n = strlen(text);
  if (n == 0 || n > kMaxDeviceIdLen) return false;
  for (size_t i = 0; i < n; ++i) {
    if (!isIdChar(text[i])) return false;
  }
  return true;
}

size_t formatDiscoveryRequest(const char* deviceId, const char* nonce, char* out, size_t cap) {
  if (!isDeviceId(deviceId) || !isLowerHex(nonce, kNonceHexLen)) return 0;
  const char* parts[] = {kAuthRequest, " ", deviceId, " ", nonce};
  size_t len = 0;
  return join(parts, 5, out, cap, &len) ? len : 0;
}

bool parsePlainReply(const char* reply, size_t len, char ip[16]) {
  return parsePrefixed("FLASK_SERVER_IP:", reply, len, ip);
}

bool parseLegacyReply(const char* reply, size_t len, char ip[16]) {
  return parsePrefixed("FLASK_SERVER:", reply, len, ip);
}

bool parseAuthReply(const char* data, size_t len, AuthReply& out) {
  while (len > 0 && isSpace(data[len - 1])) --len;
  while (len > 0 && isSpace(data[0])) {
    ++data;
    --len;
  }
  const char* field[5];
  size_t flen[5];
  size_t count = 0;
  size_t start = 0;
  for (size_t i = 0; i <= len; ++i) {
    if (i < len && data[i] != ' ') continue;
    if (count == 5) return false;
    field[count] = data + start;
    flen[count] = i - start;
    ++count;
    start = i + 1;
  }
  if (count != 5) return false;
  size_t tagLen = strlen(kAuthReply);
  if (flen[0] != tagLen || memcmp(field[0], kAuthReply, tagLen) != 0) return false;
  if (!parseIpv4(field[1], flen[1], out.ip)) return false;
  if (flen[2] == 0 || flen[2] > 5) return false;
  uint32_t port = 0;
  for (size_t i = 0; i < flen[2]; ++i) {
    char c = field[2][i];
    if (c < '0' || c > '9') return false;
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port == 0 || port > 65535) return false;
  out.port = static_cast<uint16_t>(port);
  if (flen[3] == 0 || flen[3] >= sizeof(out.nonce) || flen[4] == 0 || flen[4] >= sizeof(out.mac)) {
    return false;
  }
  memcpy(out.nonce, field[3], flen[3]);
  out.nonce[flen[3]] = '\0';
  memcpy(out.mac, field[4], flen[4]);
  out.mac[flen[4]] = '\0';
  return true;
}

void discoveryMac(const uint8_t* secret, size_t secretLen, const char* deviceId, const char* ip,
                  uint16_t port, const char* nonce, char out[65]) {
  char message[200];
  int n = snprintf(message, sizeof(message), "%s %s %u %s %s", kAuthReply, ip,
                   static_cast<unsigned>(port), nonce, deviceId);
  size_t len = n < 0 ? 0 : static_cast<size_t>(n);
  if (len >= sizeof(message)) len = sizeof(message) - 1;  // ids are at most 64: never
  uint8_t mac[32];
  hmacSha256(secret, secretLen, reinterpret_cast<const uint8_t*>(message), len, mac);
  toHex(mac, 32, out);
}

const char* replyVerdictName(ReplyVerdict verdict) {
  switch (verdict) {
    case ReplyVerdict::Accept: return "accept";
    case ReplyVerdict::Malformed: return "malformed";
    case ReplyVerdict::WrongNonce: return "wrong_nonce";
    case ReplyVerdict::Unsigned: return "unsigned";
    case ReplyVerdict::BadMac: return "bad_mac";
  }
  return "";
}

ReplyVerdict checkAuthReply(const char* data, size_t len, const uint8_t* secret, size_t secretLen,
                            const char* deviceId, const char* nonce, AuthReply& out) {
  if (!parseAuthReply(data, len, out)) return ReplyVerdict::Malformed;
  if (strcmp(out.nonce, nonce) != 0) return ReplyVerdict::WrongNonce;
  if (secret == nullptr) return ReplyVerdict::Accept;  // unpaired: nothing to verify with
  if (strcmp(out.mac, "-") == 0) return ReplyVerdict::Unsigned;
  char expected[65];
  discoveryMac(secret, secretLen, deviceId, out.ip, out.port, out.nonce, expected);
  uint8_t want[32], given[32];
  if (strlen(out.mac) != 64 || !fromHex(out.mac, given, 32) || !fromHex(expected, want, 32)) {
    return ReplyVerdict::BadMac;
  }
  return constantTimeEqual(want, given, 32) ? ReplyVerdict::Accept : ReplyVerdict::BadMac;
}

void formatCounter(uint64_t counter, char out[21]) {
  char tmp[21];
  size_t n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + counter % 10);
    counter /= 10;
  } while (counter != 0);
  for (size_t i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
  out[n] = '\0';
}

size_t requestString(const char* method, const char* target, const char* deviceId,
                     uint64_t counter, const uint8_t* body, size_t bodyLen, char* out, size_t cap) {
  char upper[8];
  size_t m = strlen(method);
  if (m == 0 || m >= sizeof(upper)) return 0;
  for (size_t i = 0; i <= m; ++i) {
    char c = method[i];
    upper[i] = c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
  }
  char count[21], hash[65];
  formatCounter(counter, count);
  bodyHash(body, bodyLen, hash);
  const char* parts[] = {"VEND1-REQ\n", upper, "\n", target, "\n", deviceId, "\n", count, "\n", hash};
  size_t len = 0;
  return join(parts, 10, out, cap, &len) ? len : 0;
}

bool signRequest(const uint8_t* secret, size_t secretLen, const char* method, const char* target,
                 const char* deviceId, uint64_t counter, const uint8_t* body, size_t bodyLen,
                 char out[65]) {
  char text[400];
  size_t n = requestString(method, target, deviceId, counter, body, bodyLen, text, sizeof(text));
  if (n == 0) return false;
  uint8_t mac[32];
  hmacSha256(secret, secretLen, reinterpret_cast<const uint8_t*>(text), n, mac);
  toHex(mac, 32, out);
  return true;
}

size_t responseString(const char* deviceId, uint64_t counter, int status, const uint8_t* body,
                      size_t bodyLen, char* out, size_t cap) {
  char count[21], code[12], hash[65];
  formatCounter(counter, count);
  snprintf(code, sizeof(code), "%d", status);
  bodyHash(body, bodyLen, hash);
  const char* parts[] = {"VEND1-RESP\n", deviceId, "\n", count, "\n", code, "\n", hash};
  size_t len = 0;
  return join(parts, 8, out, cap, &len) ? len : 0;
}

void signResponse(const uint8_t* secret, size_t secretLen, const char* deviceId, uint64_t counter,
                  int status, const uint8_t* body, size_t bodyLen, char out[65]) {
  char text[200];
  size_t n = responseString(deviceId, counter, status, body, bodyLen, text, sizeof(text));
  uint8_t mac[32];
  hmacSha256(secret, secretLen, reinterpret_cast<const uint8_t*>(text), n, mac);
  toHex(mac, 32, out);
}

bool isRevokedAnswer(const uint8_t* secret, size_t secretLen, const char* deviceId,
                     uint64_t counter, int status, const char* body, size_t bodyLen,
                     const char* signature) {
  if (status != 401) return false;
  if (!verifyResponse(secret, secretLen, deviceId, counter, status,
                      reinterpret_cast<const uint8_t*>(body), bodyLen, signature)) {
    return false;
  }
  JsonObject answer;
  char error[16];
  return answer.parse(body, bodyLen) && answer.getString("error", error, sizeof(error)) &&
         strcmp(error, "revoked") == 0;
}

bool verifyResponse(const uint8_t* secret, size_t secretLen, const char* deviceId,
                    uint64_t counter, int status, const uint8_t* body, size_t bodyLen,
                    const char* signature) {
  uint8_t given[32];
  if (signature == nullptr || strlen(signature) != 64 || !fromHex(signature, given, 32)) return false;
  char text[200];
  size_t n = responseString(deviceId, counter, status, body, bodyLen, text, sizeof(text));
  if (n == 0) return false;
  uint8_t want[32];
  hmacSha256(secret, secretLen, reinterpret_cast<const uint8_t*>(text), n, want);
  return constantTimeEqual(want, given, 32);
}

uint32_t RequestCounter::boot(uint32_t storedBootCount) {
  seq_ = 0;
  // boot_count * 2^32 must stay below 2^63: at most 2^31 - 1 boots.
  boot_ = storedBootCount >= 0x7FFFFFFFu ? 0 : storedBootCount + 1;
  return boot_;
}

uint64_t RequestCounter::next() {
  if (boot_ == 0 || seq_ == 0xFFFFFFFFu) return 0;
  ++seq_;
  return (static_cast<uint64_t>(boot_) << 32) | seq_;
}

void pairingSecret(const uint8_t shared[32], const char* deviceId, uint8_t secret[32]) {
  char message[96];
  int n = snprintf(message, sizeof(message), "vending-pair-v1|%s", deviceId);
  size_t len = n < 0 ? 0 : static_cast<size_t>(n);
  if (len >= sizeof(message)) len = sizeof(message) - 1;
  hmacSha256(shared, 32, reinterpret_cast<const uint8_t*>(message), len, secret);
}

void keyFingerprint(const uint8_t publicKey[32], char out[10]) {
  static const char kHex[] = "0123456789ABCDEF";
  uint8_t digest[32];
  sha256(publicKey, 32, digest);
  size_t at = 0;
  for (size_t i = 0; i < 4; ++i) {
    if (i == 2) out[at++] = '-';
    out[at++] = kHex[digest[i] >> 4];
    out[at++] = kHex[digest[i] & 0xF];
  }
  out[at] = '\0';
}

bool fromHex(const char* hex, uint8_t* out, size_t len) {
  for (size_t i = 0; i < 2 * len; ++i) {
    char c = hex[i];
    uint8_t v;
    if (c >= '0' && c <= '9') {
      v = static_cast<uint8_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      v = static_cast<uint8_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      v = static_cast<uint8_t>(c - 'A' + 10);
    } else {
      return false;
    }
    out[i / 2] = static_cast<uint8_t>(i % 2 ? (out[i / 2] << 4) | v : v);
  }
  return true;
}

uint32_t Backoff::nextDelay(uint32_t random) {
  uint32_t delay = baseMs_;
  for (uint32_t i = 0; i < attempts_ && delay < maxMs_; ++i) delay *= 2;
  if (delay > maxMs_) delay = maxMs_;
  if (attempts_ < 32) ++attempts_;
  uint32_t jitter = delay / 4;
  return delay + (jitter ? random % (jitter + 1) : 0);
}

}  // namespace vending
