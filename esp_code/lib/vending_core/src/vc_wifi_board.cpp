#include "vc_wifi_board.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vc_codec.h"
#include "vc_json.h"
#include "vc_crypto.h"

namespace vending {

namespace {

const char kHeaderDevice[] = "X-Device-Id";
const char kHeaderCounter[] = "X-Counter";
const char kHeaderSignature[] = "X-Signature";

void copyText(char* out, size_t cap, const char* text) {
  size_t n = strlen(text);
  if (n >= cap) n = cap - 1;
  memcpy(out, text, n);
  out[n] = '\0';
}

}  // namespace

bool readBody(ByteSource& source, int32_t contentLength, HttpCall& call, ClockFn clock,
              uint32_t deadline) {
  size_t keep = call.responseCap - 1;
  size_t want = contentLength < 0 ? keep : static_cast<size_t>(contentLength);
  if (want > keep) want = keep;  // cut: the board will not take it as whole anyway
  size_t got = 0;
  bool whole = false;
  while (true) {
    if (got == want && (contentLength >= 0 || got == keep)) {
      whole = true;
      break;
    }
    int ready = source.available();
    if (ready < 0) {
      whole = contentLength < 0;  // closed: whole only if no length was promised
      break;
    }
    if (static_cast<int32_t>(clock() - deadline) >= 0) break;
    if (ready == 0) {
      source.idle();
      continue;
    }
    got += source.read(reinterpret_cast<uint8_t*>(call.response) + got, want - got);
  }
  call.responseLen = got;
  call.response[got] = '\0';
  return whole;
}

WifiBoard::WifiBoard(const WifiBoardConfig& config, VendEngine& engine, WifiLink& link,
                     WifiNvs& nvs, KeyAgreement& keys, Console& console)
    : config_(config),
      engine_(engine),
      link_(link),
      nvs_(nvs),
      keys_(keys),
      console_(console),
      discoveryBackoff_(config.discoveryBaseMs, config.discoveryMaxMs),
      retryBackoff_(config.retryBaseMs, config.retryMaxMs) {}

void WifiBoard::sayf(const char* format, ...) {
  char text[200];
  va_list args;
  va_start(args, format);
  vsnprintf(text, sizeof(text), format, args);
  va_end(args);
  console_.say(text);
}

uint32_t WifiBoard::jitter() {
  uint8_t r[4];
  link_.random(r, sizeof(r));
  return (static_cast<uint32_t>(r[0]) << 24) | (static_cast<uint32_t>(r[1]) << 16) |
         (static_cast<uint32_t>(r[2]) << 8) | r[3];
}

void WifiBoard::begin() {
  uint32_t boot = counter_.boot(nvs_.loadBootCount());
  // A counter reused from an earlier boot would be refused as a replay: nothing signed goes
  // out until the new boot count is in flash.
  bootSaved_ = boot != 0 && nvs_.saveBootCount(boot);
  if (!bootSaved_) console_.say("ERROR: cannot store the boot count in flash; retrying");
  haveSecret_ = nvs_.loadSecret(secret_);
  console_.say(haveSecret_ ? "Paired: device secret found in flash"
                           : "Not paired yet: will pair after finding the server");
}

void WifiBoard::step(uint32_t now) {
  if (static_cast<int32_t>(now - nextTry_) < 0) return;
  if (!bootSaved_) {
    bootSaved_ = counter_.bootCount() != 0 && nvs_.saveBootCount(counter_.bootCount());
    if (!bootSaved_) {
      later(now, config_.retryMaxMs);
      return;
    }
  }
  if (!link_.connected()) {
    phase_ = Phase::Link;
    return;
  }
  if (phase_ == Phase::Link) phase_ = Phase::Discover;
  switch (phase_) {
    case Phase::Discover: discover(now); break;
    case Phase::Pair: pair(now); break;
    case Phase::Register: registerBoard(now); break;
    case Phase::Online:
      if (outboxCount_ > 0) {
        flushOne(now);  // every waiting confirm goes before the next poll
      } else {
        poll(now);
      }
      break;
    case Phase::Link: break;
  }
}

// ---- discovery

void WifiBoard::discover(uint32_t now) {
  uint8_t random[16];
  link_.random(random, sizeof(random));
  char nonce[33];
  toHex(random, sizeof(random), nonce);
  char request[128];
  size_t n = formatDiscoveryRequest(config_.deviceId, nonce, request, sizeof(request));
  if (n == 0) {
    console_.say("ERROR: the device id is not valid for discovery");
    later(now, config_.discoveryMaxMs);
    return;
  }
  if (link_.sendDiscovery(request, n)) {
    char reply[260];
    int got;
    while ((got = link_.receiveDiscovery(reply, sizeof(reply) - 1)) >= 0) {
      AuthReply parsed;
      ReplyVerdict verdict = checkAuthReply(reply, static_cast<size_t>(got),
                                            haveSecret_ ? secret_ : nullptr, sizeof(secret_),
                                            config_.deviceId, nonce, parsed);
      if (verdict == ReplyVerdict::Accept) {
        copyText(serverIp_, sizeof(serverIp_), parsed.ip);
        serverPort_ = parsed.port;
        char port[8];
        snprintf(port, sizeof(port), "%u", static_cast<unsigned>(parsed.port));
        sayf("Server found at %s:%s (%s)", parsed.ip, port,
             haveSecret_ ? "signed reply verified" : "not paired yet: unsigned");
        discoveryBackoff_.reset();
        failures_ = 0;
        phase_ = haveSecret_ ? Phase::Register : Phase::Pair;
        return;
      }
      if (verdict == ReplyVerdict::BadMac || verdict == ReplyVerdict::Unsigned) {
        // Someone else answered for the server, or it does not hold our key (revoked).
        sayf("Discovery: ignored a reply that is not signed with our key (%s)",
             replyVerdictName(verdict));
      }
    }
  }
  console_.say("Discovery: no answer, retrying");
  later(now, discoveryBackoff_.nextDelay(jitter()));
}

// ---- pairing

void WifiBoard::pair(uint32_t now) {
  if (!keyReady_) {
    uint8_t pub[32];
    if (!keys_.generate(pub)) {
      console_.say("ERROR: could not make a pairing key; retrying");
      later(now, retryBackoff_.nextDelay(jitter()));
      return;
    }
    toHex(pub, 32, publicHex_);
    keyFingerprint(pub, fingerprint_);
    keyReady_ = true;
  }
  sayf("PAIRING: key fingerprint %s. Approve %s on the server's Devices page if it shows the"
       " same code.", fingerprint_, config_.deviceId);
  char body[256];
  JsonWriter w(body, sizeof(body));
  w.string("device_id", config_.deviceId);
  w.string("public_key", publicHex_);
  w.string("firmware", config_.firmware);
  w.number("slots", static_cast<int32_t>(engine_.slots()));
  w.number("protocol", 2);
  HttpCall call;
  call.method = "POST";
  call.target = "/esp32/v2/pair";
  call.body = w.finish();
  call.bodyLen = w.size();
  call.response = response_;
  call.responseCap = sizeof(response_);
  link_.http(serverIp_, serverPort_, call);
  JsonObject answer;
  bool json = call.status > 0 && answer.parse(response_, call.responseLen);
  if (call.status == 200 && json) {
    char serverKey[65];
    uint8_t serverPublic[32], shared[32];
    if (!answer.getString("server_public_key", serverKey, sizeof(serverKey)) ||
        strlen(serverKey) != 64 || !fromHex(serverKey, serverPublic, 32) ||
        !keys_.agree(serverPublic, shared)) {
      console_.say("ERROR: the server's pairing answer has no usable key; retrying");
      later(now, retryBackoff_.nextDelay(jitter()));
      return;
    }
    pairingSecret(shared, config_.deviceId, secret_);
    memset(shared, 0, sizeof(shared));
    keys_.forget();
    keyReady_ = false;
    haveSecret_ = true;
    refusals_ = 0;
    retryBackoff_.reset();
    console_.say(nvs_.saveSecret(secret_) ? "Paired: secret stored in flash"
                                          : "ERROR: paired, but the secret could not be stored in flash");
    phase_ = Phase::Register;
    return;
  }
  if (call.status == 202) {
    int32_t retry = 2000;
    if (json) answer.getInt("retry_ms", &retry);
    if (retry < 100) retry = 100;
    if (retry > 60000) retry = 60000;
    later(now, static_cast<uint32_t>(retry));
    return;
  }
  if (call.status == 409) {
    sayf("Pairing refused: the server holds another key for %s. An operator must revoke it"
         " on the Devices page first.", config_.deviceId);
    later(now, config_.retryMaxMs);
    return;
  }
  if (call.status <= 0) {
    lost(now);
    return;
  }
  char code[12];
  snprintf(code, sizeof(code), "%d", call.status);
  sayf("Pairing refused (HTTP %s); retrying", code);
  later(now, retryBackoff_.nextDelay(jitter()));
}

// ---- signed requests

WifiBoard::Answer WifiBoard::signedCall(const char* method, const char* target, const char* body,
                                        HttpCall& call) {
  uint64_t counter = counter_.next();
  if (counter == 0) {
    console_.say("ERROR: request counter used up for this boot; restart the board");
    return Answer::Lost;
  }
  char count[21], signature[65];
  formatCounter(counter, count);
  size_t bodyLen = strlen(body);
  if (!signRequest(secret_, sizeof(secret_), method, target, config_.deviceId, counter,
                   reinterpret_cast<const uint8_t*>(body), bodyLen, signature)) {
    return Answer::Lost;
  }
  call.method = method;
  call.target = target;
  call.body = body;
  call.bodyLen = bodyLen;
  call.headerName[0] = kHeaderDevice;
  call.headerValue[0] = config_.deviceId;
  call.headerName[1] = kHeaderCounter;
  call.headerValue[1] = count;
  call.headerName[2] = kHeaderSignature;
  call.headerValue[2] = signature;
  call.headerCount = 3;
  call.response = response_;
  call.responseCap = sizeof(response_);
  link_.http(serverIp_, serverPort_, call);
  call.headerCount = 0;  // the header values lived on this stack frame
  if (call.status <= 0) return Answer::Lost;
  bool whole = call.responseLen + 1 < call.responseCap;
  if (call.status == 401) {
    // Only the server holding our secret can sign this one; anyone can send a plain 401.
    if (whole && isRevokedAnswer(secret_, sizeof(secret_), config_.deviceId, counter, call.status,
                                 response_, call.responseLen, call.signature)) {
      return Answer::Revoked;
    }
    return Answer::Refused;
  }
  if (!whole || !verifyResponse(secret_, sizeof(secret_), config_.deviceId, counter, call.status,
                                reinterpret_cast<const uint8_t*>(response_), call.responseLen,
                                call.signature)) {
    // Nobody else on the LAN may hand us a command: an answer we cannot verify is lost.
    sayf("Rejected an unsigned or forged answer to %s %s", method, target);
    return Answer::Lost;
  }
  refusals_ = 0;
  return Answer::Ok;
}

void WifiBoard::forgetSecret() {
  haveSecret_ = false;
  memset(secret_, 0, sizeof(secret_));
  nvs_.eraseSecret();
  refusals_ = 0;
}

void WifiBoard::unpair() {
  forgetSecret();
  phase_ = Phase::Discover;
  console_.say("Secret forgotten: the board will pair again (an operator must approve it)");
}

bool WifiBoard::settledBadAnswer(Answer a, uint32_t now) {
  switch (a) {
    case Answer::Lost: lost(now); return true;
    case Answer::Refused: refused(now); return true;
    case Answer::Revoked: revoked(now); return true;
    default: return false;
  }
}

bool WifiBoard::jsonAnswer(const HttpCall& call, JsonObject& answer, const char* what, uint32_t now) {
  if (call.status == 200 && answer.parse(response_, call.responseLen)) return true;
  char code[12];
  snprintf(code, sizeof(code), "%d", call.status);
  sayf("%s answered HTTP %s; retrying", what, code);
  later(now, retryBackoff_.nextDelay(jitter()));
  return false;
}

void WifiBoard::lost(uint32_t now) {
  if (++failures_ >= config_.failuresBeforeRediscovery) {
    console_.say("Server unreachable: discovering it again");
    failures_ = 0;
    phase_ = Phase::Discover;
  }
  later(now, retryBackoff_.nextDelay(jitter()));
}

void WifiBoard::refused(uint32_t now) {
  // Not proven to be the server's: forgetting the secret here would let anyone on the LAN
  // send the board to pair with a server of their own. Keep it and keep trying.
  console_.say("The server refused our signature (401) without proving it holds our secret:"
               " keeping it. If the server really lost its key file, type UNPAIR here and"
               " approve the board again on the server's Devices page.");
  if (++refusals_ >= config_.refusalsBeforeRediscovery) {
    refusals_ = 0;
    console_.say("Looking for the server again (only its signed reply is taken)");
    phase_ = Phase::Discover;
  } else {
    phase_ = Phase::Register;
  }
  later(now, retryBackoff_.nextDelay(jitter()));
}

void WifiBoard::revoked(uint32_t now) {
  // Signed with our secret: the server itself says an operator revoked us.
  console_.say("Revoked by the server (signed answer): forgetting the secret and pairing again;"
               " an operator must approve the board again");
  forgetSecret();
  retryBackoff_.reset();
  failures_ = 0;
  phase_ = Phase::Pair;
  later(now, 0);
}

// ---- register and reconcile

void WifiBoard::registerBoard(uint32_t now) {
  char ip[16] = {0};
  link_.localIp(ip);
  char body[256];
  JsonWriter w(body, sizeof(body));
  w.string("device_id", config_.deviceId);
  w.string("ip_address", ip);
  w.string("firmware", config_.firmware);
  w.number("protocol", 2);
  w.number("slots", static_cast<int32_t>(engine_.slots()));
  HttpCall call;
  Answer a = signedCall("POST", "/esp32/v2/register", w.finish() ? body : "{}", call);
  if (settledBadAnswer(a, now)) return;
  JsonObject answer;
  if (!jsonAnswer(call, answer, "Register", now)) return;
  failures_ = 0;
  retryBackoff_.reset();
  phase_ = Phase::Online;
  console_.say("Registered with the server");
  char id[65];
  for (size_t i = 0; answer.getArrayString("reconcile", i, id, sizeof(id)); ++i) {
    confirmFromJournal(id, true);
  }
}

void WifiBoard::confirmFromJournal(const char* id, bool reconcile) {
  const Entry* entry = isRequestId(id) ? engine_.find(id) : nullptr;
  if (entry == nullptr) {
    if (reconcile) pushConfirm(id, "not_received", "", "");
    return;
  }
  if (entry->state == EntryState::Success) {
    pushConfirm(id, "success", "", "");
  } else if (entry->state == EntryState::Failed) {
    pushConfirm(id, "failed", entry->reason, "");
  } else {
    // Cut by a reset while the motor turned: nobody knows whether the item fell, so the
    // vend stays unknown on the server and is never run or confirmed again.
    sayf("Vend %s was interrupted by a reset: not run again, not confirmed", id);
  }
}

// ---- confirm

void WifiBoard::pushConfirm(const char* id, const char* result, const char* reason,
                            const char* message) {
  if (outboxCount_ == kOutbox) {
    sayf("Outbox full: dropping the confirm of %s", outbox_[outboxHead_].id);
    outboxHead_ = (outboxHead_ + 1) % kOutbox;
    --outboxCount_;
  }
  Confirm& c = outbox_[(outboxHead_ + outboxCount_) % kOutbox];
  copyText(c.id, sizeof(c.id), id);
  copyText(c.result, sizeof(c.result), result);
  copyText(c.reason, sizeof(c.reason), reason);
  copyText(c.message, sizeof(c.message), message);
  ++outboxCount_;
}

void WifiBoard::vendFinished(const char* id, uint16_t slot, bool success, const char* reason) {
  char text[40];
  if (id == nullptr) {
    snprintf(text, sizeof(text), success ? "VEND_SUCCESS:%u" : "ERROR: VEND_FAILED:%u",
             static_cast<unsigned>(slot));
    console_.say(text);
    return;
  }
  snprintf(text, sizeof(text), success ? "slot %u dispensed" : "slot %u not dispensed",
           static_cast<unsigned>(slot));
  pushConfirm(id, success ? "success" : "failed", reason, text);
}

void WifiBoard::flushOne(uint32_t now) {
  const Confirm& c = outbox_[outboxHead_];
  char body[256];
  JsonWriter w(body, sizeof(body));
  w.string("id", c.id);
  w.string("result", c.result);
  if (c.reason[0]) w.string("reason", c.reason);
  if (c.message[0]) w.string("message", c.message);
  HttpCall call;
  Answer a = signedCall("POST", "/esp32/v2/confirm", w.finish() ? body : "{}", call);
  if (settledBadAnswer(a, now)) return;
  failures_ = 0;
  if (call.status == 503 || call.status >= 500) {
    later(now, retryBackoff_.nextDelay(jitter()));  // the server asks us to come back
    return;
  }
  retryBackoff_.reset();
  if (call.status != 200) {
    // 409 (another outcome recorded), 403 (not our vend), 404 (unknown id), 400: sending it
    // again cannot help, so it is dropped; the server has logged what happened.
    char code[12];
    snprintf(code, sizeof(code), "%d", call.status);
    sayf("Confirm of %s dropped: the server answered HTTP %s", c.id, code);
  }
  outboxHead_ = (outboxHead_ + 1) % kOutbox;
  --outboxCount_;
}

// ---- long-poll and vends

void WifiBoard::poll(uint32_t now) {
  char target[48];
  snprintf(target, sizeof(target), "/esp32/v2/commands?wait=%u", static_cast<unsigned>(config_.pollWaitS));
  HttpCall call;
  call.timeoutMs = (static_cast<uint32_t>(config_.pollWaitS) + kPollMarginS) * 1000;
  Answer a = signedCall("GET", target, "", call);
  if (settledBadAnswer(a, now)) return;
  JsonObject answer;
  if (!jsonAnswer(call, answer, "Poll", now)) return;
  failures_ = 0;
  retryBackoff_.reset();
  char command[16] = {0};
  if (!answer.getString("command", command, sizeof(command))) {
    int32_t again = 0;
    answer.getInt("poll_again_ms", &again);
    if (again > 0) later(now, static_cast<uint32_t>(again > 60000 ? 60000 : again));
    return;
  }
  char id[kMaxIdLen + 1];
  int32_t slot = 0;
  if (strcmp(command, "VEND") != 0 || !answer.getString("id", id, sizeof(id)) || !isRequestId(id) ||
      !answer.getInt("slot", &slot)) {
    sayf("Ignored a command this firmware does not know: %s", command);
    return;
  }
  handleVend(id, slot, now);
}

void WifiBoard::handleVend(const char* id, int32_t slot, uint32_t now) {
  uint16_t s = slot >= 1 && slot <= 0xFFFF ? static_cast<uint16_t>(slot) : 0;
  const Entry* entry = nullptr;
  VendEngine::Decision d = engine_.requestVend(id, s, now, &entry);
  if (d == VendEngine::Decision::Start) {
    char text[8];
    snprintf(text, sizeof(text), "%u", static_cast<unsigned>(s));
    sayf("VEND %s: slot %s", id, text);
    engine_.startMotor(now);
  } else if (d == VendEngine::Decision::Refused) {
    pushConfirm(id, "failed", entry->reason, "refused by the board; not dispensed");
  } else {
    confirmFromJournal(id, false);  // a repeat: the journaled result again, never the motor
  }
}

}  // namespace vending
