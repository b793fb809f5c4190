// WiFi vending board (protocol 2 of docs/protocol-wifi.md): signed discovery, X25519
// pairing approved by an operator, long-poll, exactly-once vends, confirm until acknowledged.
// A thin shell: pins, WiFi, UDP, HTTP, NVS, mbedtls and the watchdog here; every protocol
// rule lives in the plain C++ core (vending::WifiBoard), tested on the host.
#include <Arduino.h>
#include <HTTPClient.h>
#include <Preferences.h>
#include <WiFi.h>
#include <WiFiUdp.h>
#include <esp_task_wdt.h>
#if ESP_ARDUINO_VERSION_MAJOR >= 3
#include <esp_random.h>
#else
#include <esp_system.h>
#endif
#include <mbedtls/ecdh.h>
#include <vending_core.h>

#include "config.h"
#include "secrets.h"  // copy secrets.example.h to secrets.h first

static const uint8_t kMotorPins[] = MOTOR_PINS;
static const uint32_t kRunMs[] = SLOT_RUN_MS;
static const uint16_t kSlots = sizeof(kMotorPins) / sizeof(kMotorPins[0]);
static const uint8_t kMotorOn = MOTOR_ACTIVE_HIGH ? HIGH : LOW;
static const uint8_t kMotorOff = MOTOR_ACTIVE_HIGH ? LOW : HIGH;

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

static Preferences g_prefs;  // NVS namespace "vending": journal, secret, boot count

class NvsJournal : public vending::Storage {
 public:
  size_t load(char* buf, size_t cap) override {
    size_t n = g_prefs.getBytesLength("memory");
    return n > 0 && n <= cap ? g_prefs.getBytes("memory", buf, n) : 0;
  }
  bool save(const char* data, size_t len) override { return g_prefs.putBytes("memory", data, len) == len; }
};

class NvsKeys : public vending::WifiNvs {
 public:
  bool loadSecret(uint8_t secret[32]) override {
    return g_prefs.getBytesLength("secret") == 32 && g_prefs.getBytes("secret", secret, 32) == 32;
  }
  bool saveSecret(const uint8_t secret[32]) override { return g_prefs.putBytes("secret", secret, 32) == 32; }
  void eraseSecret() override { g_prefs.remove("secret"); }
  uint32_t loadBootCount() override { return g_prefs.getUInt("boot", 0); }
  bool saveBootCount(uint32_t count) override { return g_prefs.putUInt("boot", count) == sizeof(count); }
};

static int mbedRandom(void*, unsigned char* out, size_t len) {
  esp_fill_random(out, len);
  return 0;
}

// X25519 through mbedtls (MBEDTLS_ECP_DP_CURVE25519), keys little-endian as RFC 7748.
class MbedtlsKeys : public vending::KeyAgreement {
 public:
  bool generate(uint8_t publicKey[32]) override {
    forget();
    mbedtls_ecp_group_init(&grp_);
    mbedtls_mpi_init(&d_);
    mbedtls_ecp_point_init(&q_);
    have_ = true;
    size_t olen = 0;
    bool ok = mbedtls_ecp_group_load(&grp_, MBEDTLS_ECP_DP_CURVE25519) == 0 &&
              mbedtls_ecdh_gen_public(&grp_, &d_, &q_, mbedRandom, nullptr) == 0 &&
              mbedtls_ecp_point_write_binary(&grp_, &q_, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen, publicKey, 32) == 0 &&
              olen == 32;
    if (!ok) forget();
    return ok;
  }
  bool agree(const uint8_t peerPublic[32], uint8_t shared[32]) override {
    if (!have_) return false;
    mbedtls_ecp_point peer;
    mbedtls_mpi z;
    mbedtls_ecp_point_init(&peer);
    mbedtls_mpi_init(&z);
    bool ok = mbedtls_ecp_point_read_binary(&grp_, &peer, peerPublic, 32) == 0 &&
              mbedtls_ecdh_compute_shared(&grp_, &z, &peer, &d_, mbedRandom, nullptr) == 0 &&
              mbedtls_mpi_write_binary_le(&z, shared, 32) == 0;
    mbedtls_ecp_point_free(&peer);
    mbedtls_mpi_free(&z);
    return ok;
  }
  void forget() override {
    if (!have_) return;
    mbedtls_ecp_group_free(&grp_);
    mbedtls_mpi_free(&d_);  // zeroizes the private key
    mbedtls_ecp_point_free(&q_);
    have_ = false;
  }

 private:
  mbedtls_ecp_group grp_;
  mbedtls_mpi d_;
  mbedtls_ecp_point q_;
  bool have_ = false;
};

class ArduinoLink : public vending::WifiLink {
 public:
  bool connected() override { return WiFi.status() == WL_CONNECTED; }
  void localIp(char out[16]) override { snprintf(out, 16, "%s", WiFi.localIP().toString().c_str()); }
  void random(uint8_t* out, size_t len) override { esp_fill_random(out, len); }
  bool sendDiscovery(const char* data, size_t len) override {
    udp_.stop();
    udp_.begin(DISCOVERY_REPLY_PORT);
    IPAddress broadcast((uint32_t)WiFi.localIP() | ~(uint32_t)WiFi.subnetMask());
    windowEnd_ = millis() + 500;
    return udp_.beginPacket(broadcast, DISCOVERY_PORT) && udp_.write((const uint8_t*)data, len) == len &&
           udp_.endPacket();
  }
  int receiveDiscovery(char* buf, size_t cap) override {
    while ((int32_t)(millis() - windowEnd_) < 0) {
      if (udp_.parsePacket() > 0) return udp_.read(buf, cap);
      delay(5);
    }
    udp_.stop();
    return -1;
  }
  void http(const char* ip, uint16_t port, vending::HttpCall& call) override {
    char url[96];
    snprintf(url, sizeof(url), "http://%s:%u%s", ip, (unsigned)port, call.target);
    HTTPClient client;
    client.begin(url);
    client.setConnectTimeout(3000);
    client.setTimeout(call.timeoutMs > 60000 ? 60000 : (uint16_t)call.timeoutMs);
    static const char* kCollect[] = {"X-Signature"};
    client.collectHeaders(kCollect, 1);
    for (size_t i = 0; i < call.headerCount; ++i) client.addHeader(call.headerName[i], call.headerValue[i]);
    if (call.bodyLen) client.addHeader("Content-Type", "application/json");
    call.status = client.sendRequest(call.method, (uint8_t*)call.body, call.bodyLen);
    call.responseLen = 0;
    if (call.status > 0) {
      String body = client.getString();
      call.responseLen = body.length() < call.responseCap ? body.length() : call.responseCap - 1;
      memcpy(call.response, body.c_str(), call.responseLen);
      call.response[call.responseLen] = '\0';
      snprintf(call.signature, sizeof(call.signature), "%s", client.header("X-Signature").c_str());
    }
    client.end();
  }

 private:
  WiFiUDP udp_;
  uint32_t windowEnd_ = 0;
};

class SerialConsole : public vending::Console {
 public:
  void say(const char* text) override { Serial.println(text); }
};

static PinMotor g_motor;
static BeamSensor g_sensor;
static NvsJournal g_journal;
static NvsKeys g_keys;
static MbedtlsKeys g_x25519;
static ArduinoLink g_link;
static SerialConsole g_console;
static vending::VendEngine* g_engine = nullptr;
static vending::WifiBoard* g_board = nullptr;
static char g_dev[20];
static uint32_t g_nextJoin = 0;
// Joining takes a few seconds: retrying sooner would restart it before it can finish.
static vending::Backoff g_wifiBackoff(5000, 60000);

static void keepWifiJoined(uint32_t now) {
  if (WiFi.status() == WL_CONNECTED) {
    if (g_wifiBackoff.attempts()) Serial.printf("WiFi connected, address %s\n", WiFi.localIP().toString().c_str());
    g_wifiBackoff.reset();
    return;
  }
  if ((int32_t)(now - g_nextJoin) < 0) return;
  Serial.println("WiFi: connecting...");
  WiFi.disconnect();
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  g_nextJoin = now + g_wifiBackoff.nextDelay(esp_random());
}

static vending::EngineConfig engineConfig() {
  vending::EngineConfig c;
  c.slots = kSlots;
  for (uint16_t i = 0; i < kSlots && i < vending::kMaxSlots; ++i) c.slotRunMs[i] = kRunMs[i];
  c.useSensor = SENSOR_PIN >= 0;
  c.jamMs = JAM_MS;
  c.maxRunMs = MAX_RUN_MS;
  c.memorySize = vending::kMaxMemorySize;  // the journal of the last 32 request ids
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
  g_prefs.begin("vending", false);
  if (SENSOR_PIN >= 0) {
    pinMode(SENSOR_PIN, INPUT_PULLUP);
    attachInterrupt(digitalPinToInterrupt(SENSOR_PIN), onBeam, SENSOR_BROKEN_LEVEL == LOW ? FALLING : RISING);
  }
  uint64_t mac = ESP.getEfuseMac();  // first MAC byte is the lowest byte
  snprintf(g_dev, sizeof(g_dev), "ESP32_%02X%02X%02X%02X%02X%02X", (uint8_t)mac, (uint8_t)(mac >> 8),
           (uint8_t)(mac >> 16), (uint8_t)(mac >> 24), (uint8_t)(mac >> 32), (uint8_t)(mac >> 40));
  static vending::VendEngine engine(engineConfig(), g_motor, &g_sensor, g_journal);
  g_engine = &engine;
  engine.begin();  // restores the journal: a vend cut by the reset is now interrupted
  Serial.printf("VENDING BOARD fw=%s proto=2 dev=%s slots=%u transport=wifi\n", FIRMWARE_VERSION, g_dev, kSlots);
  Serial.println("Type HELP for commands.");
  vending::WifiBoardConfig wc;
  wc.deviceId = g_dev;
  wc.firmware = FIRMWARE_VERSION;
  wc.pollWaitS = LONG_POLL_SECONDS;
  static vending::WifiBoard board(wc, engine, g_link, g_keys, g_x25519, g_console);
  g_board = &board;
  engine.setListener(&board);
  board.begin();  // boot count +1 in NVS, secret read
  WiFi.mode(WIFI_STA);
  keepWifiJoined(millis());
  engine.setReady(true);
}

static const char* phaseName() {
  switch (g_board->phase()) {
    case vending::WifiBoard::Phase::Link: return "joining WiFi";
    case vending::WifiBoard::Phase::Discover: return "looking for the server";
    case vending::WifiBoard::Phase::Pair: return "waiting for approval";
    case vending::WifiBoard::Phase::Register: return "registering";
    case vending::WifiBoard::Phase::Online: return "online";
  }
  return "";
}

static void humanCommands() {
  if (Serial.available() <= 0) return;
  String cmd = Serial.readStringUntil('\n');
  cmd.trim();
  cmd.toUpperCase();
  if (cmd == "HELP") {
    Serial.println("Commands: HELP, IDENTIFY, STATUS, VEND:<slot>, UNPAIR (forget the server's key)");
  } else if (cmd == "IDENTIFY" || cmd == "DISCOVER") {
    Serial.printf("DEVICE_ID:%s\nFIRMWARE_VERSION:%s\nSLOTS_AVAILABLE:%u\nPROTOCOL:2\nSTATE:%s\nPAIRED:%s\n", g_dev,
                  FIRMWARE_VERSION, kSlots, phaseName(), g_board->paired() ? "yes" : "no");
    if (g_board->serverPort()) Serial.printf("SERVER:%s:%u\n", g_board->serverIp(), g_board->serverPort());
    if (g_board->fingerprint()[0]) Serial.printf("KEY_FINGERPRINT:%s\n", g_board->fingerprint());
  } else if (cmd == "STATUS" || cmd == "PING") {
    Serial.println(g_engine->busy() ? "STATUS:BUSY" : "STATUS:READY");
  } else if (cmd == "UNPAIR") {
    g_board->unpair();
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
    // On while a motor turns; slow blink online; fast blink while joining, looking or pairing.
    uint32_t period = g_board->phase() == vending::WifiBoard::Phase::Online ? 1000 : 150;
    digitalWrite(STATUS_LED_PIN, g_engine->busy() || (now / period) % 2 ? HIGH : LOW);
  }
  keepWifiJoined(now);
  // Network exchanges block (a long-poll up to LONG_POLL_SECONDS); never while a motor
  // turns, so the vend timing stays exact.
  if (!g_engine->busy()) g_board->step(now);
}
