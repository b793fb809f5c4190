// WiFi vending board: discovery, pairing, long-poll for commands, signed requests.
// A thin shell: WiFi, HTTP, NVS, pins and watchdog here; the vend rules (exactly-once
// memory, motor state machine) and the crypto live in the plain C++ core.
//
// TO ALIGN with docs/protocol-wifi.md (written on another branch): every HTTP path,
// header name, body format and the canonical string signed are marked "ALIGN" below.
#include <Arduino.h>
#include <HTTPClient.h>
#include <Preferences.h>
#include <WiFi.h>
#include <WiFiUdp.h>
#include <esp_task_wdt.h>
#include <vending_core.h>

#include "config.h"
#include "secrets.h"  // copy secrets.example.h to secrets.h first

static const uint8_t kMotorPins[] = MOTOR_PINS;
static const uint32_t kRunMs[] = SLOT_RUN_MS;
static const uint16_t kSlots = sizeof(kMotorPins) / sizeof(kMotorPins[0]);
static const uint8_t kMotorOn = MOTOR_ACTIVE_HIGH ? HIGH : LOW;
static const uint8_t kMotorOff = MOTOR_ACTIVE_HIGH ? LOW : HIGH;

// ALIGN: paths and headers.
static const char kPairPath[] = "/esp32/wifi/pair";
static const char kCommandPath[] = "/esp32/wifi/command";
static const char kResultPath[] = "/esp32/wifi/result";

class PinMotor : public vending::Motor {
 public:
  void allOff() override {
    for (uint16_t i = 0; i < kSlots; ++i) {
      digitalWrite(kMotorPins[i], kMotorOff);
      pinMode(kMotorPins[i], OUTPUT);
    }
  }
  void start(uint16_t slot) override { digitalWrite(kMotorPins[slot - 1], kMotorOn); }
  void stop(uint16_t slot) override { digitalWrite(kMotorPins[slot - 1], kMotorOff); }
};

static volatile bool g_beamBroken = false;
static void IRAM_ATTR onBeam() { g_beamBroken = true; }

class BeamSensor : public vending::Sensor {
 public:
  void arm(uint16_t) override { g_beamBroken = false; }
  bool itemSeen() override { return g_beamBroken; }
};

class NvsStorage : public vending::Storage {
 public:
  Preferences prefs;
  size_t load(char* buf, size_t cap) override {
    size_t n = prefs.getBytesLength("memory");
    return n > 0 && n <= cap ? prefs.getBytes("memory", buf, n) : 0;
  }
  bool save(const char* data, size_t len) override { return prefs.putBytes("memory", data, len) == len; }
};

// Outcomes to report, kept until the server acknowledges each (one motor at a time, so
// a few places are plenty; the oldest is dropped only if the server is gone for long).
class Outbox : public vending::EngineListener {
 public:
  void vendFinished(const char* id, uint16_t slot, bool success, const char* reason) override {
    if (id == nullptr) {
      Serial.printf(success ? "VEND_SUCCESS:%u\n" : "ERROR: VEND_FAILED:%u %s\n", slot, reason);
      Serial.println("----------");
      return;
    }
    vending::LineWriter w;  // ALIGN: the result body; here a protocol v2 DONE line
    w.begin("DONE");
    w.field("id", id);
    w.field("result", success ? "success" : "failed");
    if (!success) w.field("reason", reason);
    if (w.finish()) push(w.data());
  }
  void push(const char* line) {
    if (count_ == kSize) drop();
    strncpy(lines_[(head_ + count_) % kSize], line, sizeof(lines_[0]) - 1);
    ++count_;
  }
  const char* front() const { return count_ ? lines_[head_] : nullptr; }
  void drop() {
    head_ = (head_ + 1) % kSize;
    --count_;
  }

 private:
  static const size_t kSize = 6;
  char lines_[kSize][vending::kMaxLine + 3] = {};
  size_t head_ = 0;
  size_t count_ = 0;
};

static PinMotor g_motor;
static BeamSensor g_sensor;
static NvsStorage g_storage;
static Outbox g_outbox;
static vending::VendEngine* g_engine = nullptr;
static char g_dev[20];
static char g_boot[9];
static char g_server[16];
static String g_secret;
static uint32_t g_nonce = 0;
static uint32_t g_nextTry = 0;
// Joining takes a few seconds: retrying sooner would restart it before it can finish.
static vending::Backoff g_wifiBackoff(5000, 60000);
static vending::Backoff g_discoveryBackoff(2000, 60000);
static vending::Backoff g_httpBackoff(1000, 30000);

enum class Phase { Wifi, Discover, Pair, Online };
static Phase g_phase = Phase::Wifi;

static void waitBeforeRetry(vending::Backoff& backoff) { g_nextTry = millis() + backoff.nextDelay(esp_random()); }

// ALIGN: the canonical string and header names of the request signature.
static bool sendSigned(HTTPClient& http, const char* method, const char* path, const String& body,
                       int* status, String* reply) {
  char url[96];
  snprintf(url, sizeof(url), "http://%s:%d%s", g_server, SERVER_PORT, path);
  http.begin(url);
  http.setTimeout((LONG_POLL_SECONDS + 5) * 1000);
  char stamp[12], nonce[20], canon[256], sig[65];
  snprintf(stamp, sizeof(stamp), "%lu", (unsigned long)(millis() / 1000));
  snprintf(nonce, sizeof(nonce), "%s%08lX", g_boot, (unsigned long)++g_nonce);
  size_t n = vending::canonicalRequest(method, path, stamp, nonce, (const uint8_t*)body.c_str(), body.length(),
                                       canon, sizeof(canon));
  vending::signHex((const uint8_t*)g_secret.c_str(), g_secret.length(), canon, n, sig);
  http.addHeader("X-Device-Id", g_dev);
  http.addHeader("X-Timestamp", stamp);
  http.addHeader("X-Nonce", nonce);
  http.addHeader("X-Signature", sig);
  *status = strcmp(method, "GET") == 0 ? http.GET() : http.POST(body);
  if (*status > 0) *reply = http.getString();
  http.end();
  return *status >= 200 && *status < 300;
}

static void stepWifi() {
  if (WiFi.status() == WL_CONNECTED) {
    Serial.printf("WiFi connected, address %s\n", WiFi.localIP().toString().c_str());
    g_wifiBackoff.reset();
    g_phase = Phase::Discover;
    return;
  }
  Serial.println("WiFi: connecting...");
  WiFi.disconnect();
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  waitBeforeRetry(g_wifiBackoff);  // checked again after the back-off delay
}

static void stepDiscover() {
  WiFiUDP udp;
  udp.begin(DISCOVERY_PORT);
  IPAddress broadcast = WiFi.localIP() | ~WiFi.subnetMask();
  udp.beginPacket(broadcast, DISCOVERY_PORT);
  udp.print("DISCOVER_FLASK_SERVER");
  udp.endPacket();
  uint32_t until = millis() + 2000;
  while ((int32_t)(until - millis()) > 0) {
    int size = udp.parsePacket();
    if (size > 0) {
      char reply[64];
      int n = udp.read(reply, sizeof(reply) - 1);
      // ALIGN: a signed discovery reply (verifyHex) once protocol-wifi.md defines one.
      if (n > 0 && vending::parseDiscoveryReply(reply, (size_t)n, g_server)) {
        Serial.printf("Server found at %s\n", g_server);
        g_discoveryBackoff.reset();
        g_phase = g_secret.length() ? Phase::Online : Phase::Pair;
        udp.stop();
        return;
      }
    }
    delay(10);
  }
  udp.stop();
  Serial.println("Discovery: no answer, retrying");
  waitBeforeRetry(g_discoveryBackoff);
}

static void stepPair() {
  HTTPClient http;
  int status = 0;
  String reply;
  // ALIGN: pairing request and reply; signed with the pairing code until a secret exists.
  String body = String("device_id=") + g_dev + "&code=" + PAIRING_CODE;
  g_secret = PAIRING_CODE;
  bool ok = sendSigned(http, "POST", kPairPath, body, &status, &reply);
  g_secret = "";
  if (ok && reply.length() >= 32) {
    g_secret = reply;
    g_storage.prefs.putString("secret", g_secret);
    Serial.println("Paired: secret stored in flash");
    g_phase = Phase::Online;
    return;
  }
  Serial.printf("Pairing refused (HTTP %d); pair the board on the server's Devices page\n", status);
  waitBeforeRetry(g_httpBackoff);
}

static void handleCommand(const String& line) {
  vending::Message msg;  // ALIGN: the command body; here a protocol v2 VEND line
  if (vending::parseLine((const uint8_t*)line.c_str(), line.length(), msg) != vending::ParseStatus::Machine ||
      msg.verb() != vending::Verb::Vend) {
    return;
  }
  const char* id = msg.get("id");
  const vending::Entry* entry = nullptr;
  vending::VendEngine::Decision d = g_engine->requestVend(id, msg.getUint("slot"), millis(), &entry);
  if (d == vending::VendEngine::Decision::Start) {
    g_engine->startMotor(millis());
  } else if (entry->state == vending::EntryState::Interrupted) {
    vending::LineWriter w;
    w.begin("STATE");
    w.field("id", id);
    w.field("state", "interrupted");
    if (w.finish()) g_outbox.push(w.data());
  } else if (entry->state != vending::EntryState::Running) {
    g_outbox.vendFinished(id, entry->slot, entry->state == vending::EntryState::Success, entry->reason);
  }
}

static void stepOnline() {
  if (WiFi.status() != WL_CONNECTED) {
    g_phase = Phase::Wifi;
    return;
  }
  HTTPClient http;
  int status = 0;
  String reply;
  if (const char* line = g_outbox.front()) {  // confirm with retry until acknowledged
    if (sendSigned(http, "POST", kResultPath, String(line), &status, &reply)) {
      g_outbox.drop();
      g_httpBackoff.reset();
    } else {
      waitBeforeRetry(g_httpBackoff);
    }
    return;
  }
  char path[64];
  snprintf(path, sizeof(path), "%s?wait=%d", kCommandPath, LONG_POLL_SECONDS);
  if (sendSigned(http, "GET", path, String(), &status, &reply)) {
    g_httpBackoff.reset();
    if (status == 200) handleCommand(reply);
  } else if (status == 401 || status == 403) {
    Serial.println("Server refused our signature: pairing again");
    g_secret = "";
    g_storage.prefs.remove("secret");
    g_phase = Phase::Pair;
  } else {
    Serial.printf("Server unreachable (HTTP %d): discovering again\n", status);
    g_phase = Phase::Discover;
    waitBeforeRetry(g_httpBackoff);
  }
}

static vending::EngineConfig engineConfig() {
  vending::EngineConfig c;
  c.slots = kSlots;
  for (uint16_t i = 0; i < kSlots && i < vending::kMaxSlots; ++i) c.slotRunMs[i] = kRunMs[i];
  c.useSensor = SENSOR_PIN >= 0;
  c.jamMs = JAM_MS;
  c.maxRunMs = MAX_RUN_MS;
  return c;
}

void setup() {
  g_motor.allOff();  // failsafe: before anything else, every motor off
  if (STATUS_LED_PIN >= 0) pinMode(STATUS_LED_PIN, OUTPUT);
  Serial.begin(115200);
  Serial.setTimeout(50);  // a human line without its newline must not stall the loop
#if ESP_ARDUINO_VERSION_MAJOR >= 3
  esp_task_wdt_config_t wdt = {WATCHDOG_SECONDS * 1000, 0, true};
  esp_task_wdt_reconfigure(&wdt);
#else
  esp_task_wdt_init(WATCHDOG_SECONDS, true);
#endif
  esp_task_wdt_add(nullptr);
  g_storage.prefs.begin("vending", false);
  g_secret = g_storage.prefs.getString("secret", "");
  if (SENSOR_PIN >= 0) {
    pinMode(SENSOR_PIN, INPUT_PULLUP);
    attachInterrupt(digitalPinToInterrupt(SENSOR_PIN), onBeam, SENSOR_BROKEN_LEVEL == LOW ? FALLING : RISING);
  }
  uint64_t mac = ESP.getEfuseMac();
  snprintf(g_dev, sizeof(g_dev), "ESP32_%02X%02X%02X%02X%02X%02X", (uint8_t)mac, (uint8_t)(mac >> 8),
           (uint8_t)(mac >> 16), (uint8_t)(mac >> 24), (uint8_t)(mac >> 32), (uint8_t)(mac >> 40));
  snprintf(g_boot, sizeof(g_boot), "%08lX", (unsigned long)esp_random());
  static vending::VendEngine engine(engineConfig(), g_motor, &g_sensor, g_storage);
  g_engine = &engine;
  engine.setListener(&g_outbox);
  engine.begin();  // restores NVS: a vend cut by the reboot is now interrupted
  Serial.printf("VENDING BOARD fw=%s proto=2 dev=%s boot=%s slots=%u transport=wifi\n", FIRMWARE_VERSION, g_dev,
                g_boot, kSlots);
  Serial.println("Type HELP for commands.");
  WiFi.mode(WIFI_STA);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  g_nextTry = millis() + 3000;
  engine.setReady(true);
}

static void humanCommands() {
  if (Serial.available() <= 0) return;
  String cmd = Serial.readStringUntil('\n');
  cmd.trim();
  cmd.toUpperCase();
  if (cmd == "HELP") {
    Serial.println("Commands: HELP, IDENTIFY, STATUS, VEND:<slot>");
  } else if (cmd == "IDENTIFY" || cmd == "DISCOVER") {
    Serial.printf("DEVICE_ID:%s\nFIRMWARE_VERSION:%s\nSLOTS_AVAILABLE:%u\nPROTOCOL:2\nBOOT_ID:%s\nSERVER:%s\n", g_dev,
                  FIRMWARE_VERSION, kSlots, g_boot, g_phase == Phase::Online ? g_server : "(none)");
  } else if (cmd == "STATUS" || cmd == "PING") {
    Serial.println(g_engine->busy() ? "STATUS:BUSY" : "STATUS:READY");
  } else if (cmd.startsWith("VEND:")) {
    long slot = cmd.substring(5).toInt();
    vending::Refusal r = g_engine->startHumanVend(slot > 0 && slot <= kSlots ? (uint16_t)slot : 0, millis());
    Serial.println(r == vending::Refusal::None ? "VENDING:" + String(slot) : "ERROR: " + String(vending::refusalReason(r)));
    if (r == vending::Refusal::None) return;
  } else if (cmd.length()) {
    Serial.println("ERROR: Unknown command (type HELP)");
  }
  Serial.println("----------");
}

void loop() {
  esp_task_wdt_reset();
  uint32_t now = millis();
  g_engine->poll(now);
  humanCommands();
  if (STATUS_LED_PIN >= 0) {
    // On while a motor turns; slow blink online; fast blink while looking for WiFi/server.
    uint32_t period = g_phase == Phase::Online ? 1000 : 150;
    digitalWrite(STATUS_LED_PIN, g_engine->busy() || (now / period) % 2 ? HIGH : LOW);
  }
  // Network steps block; never while a motor turns, so the vend timing stays exact.
  if (g_engine->busy() || (int32_t)(now - g_nextTry) < 0) return;
  switch (g_phase) {
    case Phase::Wifi: stepWifi(); break;
    case Phase::Discover: stepDiscover(); break;
    case Phase::Pair: stepPair(); break;
    case Phase::Online: stepOnline(); break;
  }
}
