// The WiFi wire format of docs/protocol-wifi.md, as src/vending/protocol/wifi.py defines it:
// discovery datagrams, request/response signatures, the replay counter, pairing.
// Pure functions (no sockets, no clock); tests/vectors/wifi_v2.tsv holds the shared vectors.
#ifndef VC_WIFI_H
#define VC_WIFI_H

#include <stddef.h>
#include <stdint.h>

namespace vending {

// Discovery requests (UDP 12346) and reply tags.
extern const char kPlainRequest[];   // "DISCOVER_FLASK_SERVER"
extern const char kLegacyRequest[];  // "ESP32_DISCOVERY_REQUEST"
extern const char kAuthRequest[];    // "VENDING_DISCOVER_V2"
extern const char kAuthReply[];      // "VENDING_SERVER_V2"
const size_t kNonceHexLen = 32;      // 16 random bytes
const size_t kSecretBytes = 32;
const size_t kMaxDeviceIdLen = 64;

// 1-64 characters of A-Z a-z 0-9 _ . : - (what the server accepts as a board id).
bool isDeviceId(const char* text);

// "VENDING_DISCOVER_V2 <device_id> <nonce>"; returns its length, 0 when it does not fit or
// the id or nonce (32 lower-case hex digits) is not valid.
size_t formatDiscoveryRequest(const char* deviceId, const char* nonce, char* out, size_t cap);

// The plain reply "FLASK_SERVER_IP:<a.b.c.d>" and the earlier firmware's "FLASK_SERVER:<...>"
// (trailing CR/LF/spaces allowed). Writes the dotted address to ip[16]; false when malformed.
bool parsePlainReply(const char* reply, size_t len, char ip[16]);
bool parseLegacyReply(const char* reply, size_t len, char ip[16]);

struct AuthReply {
  char ip[16];
  uint16_t port;
  char nonce[65];
  char mac[65];  // 64 hex digits, or "-" when the server holds no key for this board
};

// Splits "VENDING_SERVER_V2 <ipv4> <http_port> <nonce> <mac>" (surrounding whitespace
// allowed, single spaces between fields). Stricter than the server needs to be: the address
// must be a dotted quad and the port 1-65535, because the board connects to them.
bool parseAuthReply(const char* data, size_t len, AuthReply& out);

// hex HMAC-SHA256(secret, "VENDING_SERVER_V2 <ip> <port> <nonce> <device_id>").
void discoveryMac(const uint8_t* secret, size_t secretLen, const char* deviceId, const char* ip,
                  uint16_t port, const char* nonce, char out[65]);

enum class ReplyVerdict : uint8_t { Accept, Malformed, WrongNonce, Unsigned, BadMac };
const char* replyVerdictName(ReplyVerdict verdict);

// Whether a board that sent `nonce` takes this datagram. With a secret (paired) only a reply
// whose MAC verifies; without one (secret == nullptr) the first reply carrying our nonce.
ReplyVerdict checkAuthReply(const char* data, size_t len, const uint8_t* secret, size_t secretLen,
                            const char* deviceId, const char* nonce, AuthReply& out);

// Decimal, no leading zeros, into out[21].
void formatCounter(uint64_t counter, char out[21]);

// The canonical request string: VEND1-REQ, METHOD (upper case), target, device id, counter,
// hex SHA-256 of the body, joined by "\n". Returns its length, 0 when it does not fit.
size_t requestString(const char* method, const char* target, const char* deviceId,
                     uint64_t counter, const uint8_t* body, size_t bodyLen, char* out, size_t cap);
// X-Signature of a request: hex HMAC-SHA256 of requestString(). False when too long.
bool signRequest(const uint8_t* secret, size_t secretLen, const char* method, const char* target,
                 const char* deviceId, uint64_t counter, const uint8_t* body, size_t bodyLen,
                 char out[65]);

// "VEND1-RESP\n<device_id>\n<counter>\n<status>\n<hex SHA-256 of the answer body>".
size_t responseString(const char* deviceId, uint64_t counter, int status, const uint8_t* body,
                      size_t bodyLen, char* out, size_t cap);
void signResponse(const uint8_t* secret, size_t secretLen, const char* deviceId, uint64_t counter,
                  int status, const uint8_t* body, size_t bodyLen, char out[65]);
// True when signature (the answer's X-Signature) is the server's, compared in constant time.
bool verifyResponse(const uint8_t* secret, size_t secretLen, const char* deviceId,
                    uint64_t counter, int status, const uint8_t* body, size_t bodyLen,
                    const char* signature);
// True only for the server's "you are revoked" answer: status 401, signed with our secret
// like any answer (verifyResponse) and {"error": "revoked"}. The one 401 that may make a
// board forget its secret: an unsigned 401 can come from anyone on the LAN, and a board that
// forgot its secret would pair with whoever answers discovery first.
bool isRevokedAnswer(const uint8_t* secret, size_t secretLen, const char* deviceId,
                     uint64_t counter, int status, const char* body, size_t bodyLen,
                     const char* signature);

// The replay counter: boot_count * 2^32 + seq. boot_count lives in NVS and goes up once per
// boot; seq starts at 1 after boot and goes up by one per request, retries included.
class RequestCounter {
 public:
  // Takes the stored boot count (0 when none) and returns the one to store before any
  // signed request is sent; 0 when the counter space is used up (never in practice).
  uint32_t boot(uint32_t storedBootCount);
  // The next counter, or 0 when this boot's 2^32-1 values are spent (the shell reboots).
  uint64_t next();
  uint32_t bootCount() const { return boot_; }

 private:
  uint32_t boot_ = 0;
  uint32_t seq_ = 0;
};

// secret = HMAC-SHA256(key = X25519 shared value, "vending-pair-v1|<device_id>").
void pairingSecret(const uint8_t shared[32], const char* deviceId, uint8_t secret[32]);
// What the board prints and the operator compares: first 8 hex digits of SHA-256(public
// key), upper case, as "XXXX-XXXX" (out[10]).
void keyFingerprint(const uint8_t publicKey[32], char out[10]);

// 2*len hex digits, either case, into out; false on anything else.
bool fromHex(const char* hex, uint8_t* out, size_t len);

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
