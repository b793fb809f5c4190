// Transport-neutral pieces of the WiFi board: discovery replies, request signing, back-off.
// The HTTP paths and header names live in the WiFi sketch until docs/protocol-wifi.md
// fixes them; what is here does not depend on them.
#ifndef VC_WIFI_H
#define VC_WIFI_H

#include <stddef.h>
#include <stdint.h>

namespace vending {

// Parses the plain discovery reply "FLASK_SERVER_IP:<a.b.c.d>" (trailing CR/LF/spaces
// allowed). Writes the dotted address (at most 15 chars) to ip[16]; false when malformed.
bool parseDiscoveryReply(const char* reply, size_t len, char ip[16]);

// The canonical string a request signature covers, one item per line:
// METHOD \n PATH \n TIMESTAMP \n NONCE \n lowercase hex SHA-256 of the body.
// Returns its length, or 0 when it does not fit in cap (terminator included).
size_t canonicalRequest(const char* method, const char* path, const char* timestamp,
                        const char* nonce, const uint8_t* body, size_t bodyLen, char* out,
                        size_t cap);

// HMAC-SHA256 of msg under secret, as 64 lowercase hex digits and a terminator.
void signHex(const uint8_t* secret, size_t secretLen, const char* msg, size_t msgLen,
             char out[65]);

// True when hexMac (64 hex digits, either case) is the HMAC-SHA256 of msg under secret.
// Compared in constant time so a forger learns nothing from how long a refusal takes.
bool verifyHex(const uint8_t* secret, size_t secretLen, const char* msg, size_t msgLen,
               const char* hexMac);

// Capped exponential back-off: 1x, 2x, 4x ... of baseMs up to maxMs, plus up to 25 %
// jitter from a random word the shell supplies (esp_random() on the chip).
class Backoff {
 public:
  Backoff(uint32_t baseMs, uint32_t maxMs) : baseMs_(baseMs), maxMs_(maxMs) {}
  uint32_t nextDelay(uint32_t random);
  void reset() { attempts_ = 0; }
  uint32_t attempts() const { return attempts_; }

 private:
  uint32_t baseMs_;
  uint32_t maxMs_;
  uint32_t attempts_ = 0;
};

}  // namespace vending

#endif
