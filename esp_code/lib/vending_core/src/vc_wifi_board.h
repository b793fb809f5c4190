// The WiFi board of docs/protocol-wifi.md (protocol 2): discovery with a signed reply,
// pairing, register with reconciliation, long-poll, exactly-once vends, confirm until
// acknowledged. Transport-neutral: the sketch (WiFi, HTTPClient, NVS, mbedtls) and the host
// board (POSIX sockets, files) drive the same code through the interfaces below.
#ifndef VC_WIFI_BOARD_H
#define VC_WIFI_BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "vc_engine.h"
#include "vc_wifi.h"
#include "vc_crypto.h"

namespace vending {

class JsonObject;

const uint32_t kHttpConnectTimeoutMs = 3000;
const uint32_t kHttpTimeoutMs = 5000;     // every request but the long-poll
const uint32_t kPollMarginS = 5;          // the long-poll: its wait plus this

// One HTTP request and its answer. The board fills the request half, the shell the rest.
struct HttpCall {
  const char* method = "GET";
  const char* target = "/";           // path and query exactly as signed
  const char* body = "";              // JSON; sent with Content-Type application/json if any
  size_t bodyLen = 0;
  const char* headerName[3] = {nullptr, nullptr, nullptr};
  const char* headerValue[3] = {nullptr, nullptr, nullptr};
  size_t headerCount = 0;
  // The shell gives up on the connection after connectTimeoutMs, and on the answer (status,
  // headers and body together) timeoutMs after that: one call blocks at most their sum.
  uint32_t connectTimeoutMs = kHttpConnectTimeoutMs;
  uint32_t timeoutMs = kHttpTimeoutMs;
  int status = 0;                     // the answer's HTTP status; <= 0: no answer at all
  char signature[65] = {0};           // its X-Signature header, "" when absent
  char* response = nullptr;           // its body (the board's buffer), cut at responseCap - 1
  size_t responseCap = 0;
  size_t responseLen = 0;
};

// What a shell reads an HTTP answer's body from (its socket).
class ByteSource {
 public:
  virtual ~ByteSource() {}
  // Bytes readable now (0: none yet), or -1 once the peer has closed and nothing is left.
  virtual int available() = 0;
  virtual size_t read(uint8_t* out, size_t cap) = 0;
  // Nothing to read yet: let the chip do something else for a moment (delay(1)).
  virtual void idle() = 0;
};

typedef uint32_t (*ClockFn)();

// Reads an answer's body into call.response, never more than responseCap - 1 bytes (a longer
// body is cut there, so the board treats it as not whole) and never past `deadline` (a clock()
// value). contentLength < 0: until the peer closes. False when the deadline passed before the
// body was whole: the answer is then lost.
bool readBody(ByteSource& source, int32_t contentLength, HttpCall& call, ClockFn clock,
              uint32_t deadline);

class WifiLink {
 public:
  virtual ~WifiLink() {}
  // Joined to the WiFi (the shell joins and re-joins with back-off on its own).
  virtual bool connected() = 0;
  virtual void localIp(char out[16]) = 0;
  virtual void random(uint8_t* out, size_t len) = 0;
  // Send one discovery datagram (to the subnet broadcast, UDP 12346) and open a ~500 ms window.
  virtual bool sendDiscovery(const char* data, size_t len) = 0;
  // The next datagram received in that window (its length), or -1 once the window is over.
  virtual int receiveDiscovery(char* buf, size_t cap) = 0;
  virtual void http(const char* ip, uint16_t port, HttpCall& call) = 0;
};

// What survives a reboot besides the journal (NVS on the chip, a file on the host).
class WifiNvs {
 public:
  virtual ~WifiNvs() {}
  virtual bool loadSecret(uint8_t secret[32]) = 0;
  virtual bool saveSecret(const uint8_t secret[32]) = 0;
  virtual void eraseSecret() = 0;
  virtual uint32_t loadBootCount() = 0;
  virtual bool saveBootCount(uint32_t count) = 0;
};

// Lines for a person at the serial monitor.
class Console {
 public:
  virtual ~Console() {}
  virtual void say(const char* text) = 0;
};

struct WifiBoardConfig {
  const char* deviceId = "";           // ESP32_ + the MAC in upper-case hex
  const char* firmware = "";
  uint16_t pollWaitS = 25;             // the server holds a poll at most 25 s
  uint32_t discoveryBaseMs = 1000;     // discovery back-off: 1 s, 2 s, ... 30 s
  uint32_t discoveryMaxMs = 30000;
  uint32_t retryBaseMs = 1000;         // HTTP failures back off the same way
  uint32_t retryMaxMs = 30000;
  uint8_t failuresBeforeRediscovery = 3;
  // Unsigned 401s in a row before the server is looked for again (by the signed discovery
  // reply). They never make the board forget its secret: only a signed "revoked" does.
  uint8_t refusalsBeforeRediscovery = 3;
};

class WifiBoard : public EngineListener {
 public:
  enum class Phase : uint8_t { Link, Discover, Pair, Register, Online };

  WifiBoard(const WifiBoardConfig& config, VendEngine& engine, WifiLink& link, WifiNvs& nvs,
            KeyAgreement& keys, Console& console);
  // At boot: the boot count goes up in NVS (the replay counter's high half) and the secret
  // is read. Call after engine.begin().
  void begin();
  // Does at most one network exchange when one is due and blocks for it: at most
  // maxBlockMs(pollWaitS) in the shell's http() (a long-poll is the longest), or one
  // discovery window. The loop's watchdog must allow more than that (the sketch checks it
  // at compile time). Call it only while no motor turns (engine.busy() false): the motor's
  // timing is the loop's.
  void step(uint32_t now);
  // The longest http() call step() makes: connect, then the poll's wait plus kPollMarginS.
  static constexpr uint32_t maxBlockMs(uint16_t pollWaitS) {
    return kHttpConnectTimeoutMs + ((pollWaitS + kPollMarginS) * 1000u > kHttpTimeoutMs
                                        ? (pollWaitS + kPollMarginS) * 1000u
                                        : kHttpTimeoutMs);
  }
  void vendFinished(const char* id, uint16_t slot, bool success, const char* reason) override;
  // Forget the secret and pair again (typed at the serial console: someone at the board).
  void unpair();

  Phase phase() const { return phase_; }
  bool paired() const { return haveSecret_; }
  const char* serverIp() const { return serverIp_; }
  uint16_t serverPort() const { return serverPort_; }
  const char* fingerprint() const { return fingerprint_; }
  size_t outboxSize() const { return outboxCount_; }

 private:
  // Refused: a 401 that does not prove it is the server's. Revoked: the server's signed
  // "revoked" 401 (isRevokedAnswer).
  enum class Answer : uint8_t { Ok, Refused, Revoked, Lost };
  struct Confirm {
    char id[65];
    char result[16];
    char reason[24];
    char message[40];
  };

  void discover(uint32_t now);
  void pair(uint32_t now);
  void registerBoard(uint32_t now);
  void flushOne(uint32_t now);
  void poll(uint32_t now);
  void handleVend(const char* id, int32_t slot, uint32_t now);
  Answer signedCall(const char* method, const char* target, const char* body, HttpCall& call);
  // Lost, refused or revoked answers are handled (true); an ordinary answer is not (false).
  bool settledBadAnswer(Answer a, uint32_t now);
  // A 200 with a JSON object parses into `answer` (true); anything else backs off (false).
  bool jsonAnswer(const HttpCall& call, JsonObject& answer, const char* what, uint32_t now);
  void lost(uint32_t now);
  void refused(uint32_t now);
  void revoked(uint32_t now);
  void forgetSecret();
  void pushConfirm(const char* id, const char* result, const char* reason, const char* message);
  void confirmFromJournal(const char* id, bool reconcile);
  void later(uint32_t now, uint32_t ms) { nextTry_ = now + ms; }
  uint32_t jitter();
  // A console line from a literal printf format (the compiler checks it against the arguments).
#if defined(__GNUC__)
  __attribute__((format(printf, 2, 3)))
#endif
  void sayf(const char* format, ...);

  WifiBoardConfig config_;
  VendEngine& engine_;
  WifiLink& link_;
  WifiNvs& nvs_;
  KeyAgreement& keys_;
  Console& console_;
  RequestCounter counter_;
  Backoff discoveryBackoff_;
  Backoff retryBackoff_;
  Phase phase_ = Phase::Link;
  bool bootSaved_ = false;
  bool haveSecret_ = false;
  bool keyReady_ = false;
  uint8_t secret_[32] = {0};
  char publicHex_[65] = {0};
  char fingerprint_[10] = {0};
  char serverIp_[16] = {0};
  uint16_t serverPort_ = 0;
  uint32_t nextTry_ = 0;
  uint8_t failures_ = 0;
  uint8_t refusals_ = 0;
  static const size_t kOutbox = 8;
  Confirm outbox_[kOutbox];
  size_t outboxHead_ = 0;
  size_t outboxCount_ = 0;
  char response_[1536] = {0};
};

}  // namespace vending

#endif
