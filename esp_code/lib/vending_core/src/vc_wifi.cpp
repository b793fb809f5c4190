#include "vc_wifi.h"

#include <string.h>

#include "vc_sha256.h"

namespace vending {

bool parseDiscoveryReply(const char* reply, size_t len, char ip[16]) {
  const char prefix[] = "FLASK_SERVER_IP:";
  size_t pn = sizeof(prefix) - 1;
  while (len > 0 && (reply[len - 1] == '\n' || reply[len - 1] == '\r' || reply[len - 1] == ' ')) {
    --len;
  }
  if (len <= pn || memcmp(reply, prefix, pn) != 0) return false;
  const char* p = reply + pn;
  size_t n = len - pn;
  if (n > 15) return false;
  int octets = 0;
  size_t digits = 0;
  unsigned value = 0;
  for (size_t i = 0; i <= n; ++i) {
    char c = i < n ? p[i] : '.';
    if (c >= '0' && c <= '9') {
      if (digits == 1 && value == 0) return false;  // no leading zeros: one spelling only
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

size_t canonicalRequest(const char* method, const char* path, const char* timestamp,
                        const char* nonce, const uint8_t* body, size_t bodyLen, char* out,
                        size_t cap) {
  uint8_t digest[32];
  Sha256 sha;
  sha.update(body, bodyLen);
  sha.finish(digest);
  char bodyHex[65];
  toHex(digest, 32, bodyHex);
  const char* parts[] = {method, "\n", path, "\n", timestamp, "\n", nonce, "\n", bodyHex};
  size_t len = 0;
  for (const char* part : parts) {
    size_t n = strlen(part);
    if (len + n + 1 > cap) return 0;
    memcpy(out + len, part, n);
    len += n;
  }
  out[len] = '\0';
  return len;
}

void signHex(const uint8_t* secret, size_t secretLen, const char* msg, size_t msgLen,
             char out[65]) {
  uint8_t mac[32];
  hmacSha256(secret, secretLen, reinterpret_cast<const uint8_t*>(msg), msgLen, mac);
  toHex(mac, 32, out);
}

bool verifyHex(const uint8_t* secret, size_t secretLen, const char* msg, size_t msgLen,
               const char* hexMac) {
  if (hexMac == nullptr || strlen(hexMac) != 64) return false;
  uint8_t given[32];
  for (size_t i = 0; i < 32; ++i) {
    uint8_t byte = 0;
    for (size_t k = 0; k < 2; ++k) {
      char c = hexMac[2 * i + k];
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
      byte = static_cast<uint8_t>((byte << 4) | v);
    }
    given[i] = byte;
  }
  uint8_t mac[32];
  hmacSha256(secret, secretLen, reinterpret_cast<const uint8_t*>(msg), msgLen, mac);
  return constantTimeEqual(mac, given, 32);
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
