// WiFi vending board (protocol 2 of docs/protocol-wifi.md): signed discovery, X25519
// pairing approved by an operator, long-poll, exactly-once vends, confirm until acknowledged.
// A thin shell: WiFi, UDP, HTTP and NVS keys here, the pins and the watchdog in vending_glue,
// SHA-256/HMAC/X25519 through the core's crypto seam (mbedTLS); every protocol
// rule lives in the plain C++ core (vending::WifiBoard), tested on the host.
#include <Arduino.h>
#include <HTTPClient.h>
#include <Preferences.h>
#include <WiFi.h>
#include <WiFiUdp.h>
#include <vending_core.h>
#include <vending_glue.h>

#include "config.h"
#include "secrets.h"  // copy secrets.example.h to secrets.h first

static const uint8_t kMotorPins[] = MOTOR_PINS;
static const uint32_t kRunMs[] = SLOT_RUN_MS;
static const uint16_t kSlots = sizeof(kMotorPins) / sizeof(kMotorPins[0]);

// step() blocks the loop for one exchange at most: the watchdog must wait longer than that.
static_assert(vending::WifiBoard::maxBlockMs(LONG_POLL_SECONDS) + 5000 <= WATCHDOG_SECONDS * 1000UL,
              "WATCHDOG_SECONDS must exceed the longest network call (LONG_POLL_SECONDS + 8 s) by 5 s");

static Preferences g_prefs;  // NVS namespace "vending": journal, secret, boot count

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

// An HTTP answer's socket, for the core's bounded body reader.
class HttpBody : public vending::ByteSource {
 public:
  explicit HttpBody(HTTPClient& client) : client_(client), stream_(client.getStreamPtr()) {}
  int available() override {
    int n = stream_ ? stream_->available() : -1;
    return n > 0 ? n : (stream_ && client_.connected() ? 0 : -1);
  }
  size_t read(uint8_t* out, size_t cap) override { return stream_->readBytes(out, cap); }
  void idle() override { delay(1); }

 private:
  HTTPClient& client_;
  Stream* stream_;
};

static uint32_t clockMs() { return millis(); }

class ArduinoLink : public vending::WifiLink {
 public:
  bool connected() override { return WiFi.status() == WL_CONNECTED; }
  void localIp(char out[16]) override { snprintf(out, 16, "%s", WiFi.localIP().toString().c_str()); }
  void random(uint8_t* out, size_t len) override { vending_glue::fillRandom(out, len); }
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
    // Bounded as vending::HttpCall says: connect, then the whole answer by one deadline, read
    // into the core's buffer (never onto the heap) and cut at its size.
    uint32_t deadline = millis() + call.connectTimeoutMs + call.timeoutMs;
    char url[96];
    snprintf(url, sizeof(url), "http://%s:%u%s", ip, static_cast<unsigned>(port), call.target);
    HTTPClient client;
    client.begin(url);
    client.setConnectTimeout(static_cast<int32_t>(call.connectTimeoutMs));
    client.setTimeout(static_cast<uint16_t>(call.timeoutMs > 65000 ? 65000 : call.timeoutMs));
    static const char* kCollect[] = {"X-Signature"};
    client.collectHeaders(kCollect, 1);
    for (size_t i = 0; i < call.headerCount; ++i) client.addHeader(call.headerName[i], call.headerValue[i]);
    if (call.bodyLen) client.addHeader("Content-Type", "application/json");
    call.status = client.sendRequest(call.method, reinterpret_cast<uint8_t*>(const_cast<char*>(call.body)), call.bodyLen);
    call.responseLen = 0;
    call.response[0] = '\0';
    if (call.status > 0) {
      snprintf(call.signature, sizeof(call.signature), "%s", client.header("X-Signature").c_str());
      HttpBody body(client);
      if (!vending::readBody(body, client.getSize(), call, clockMs, deadline)) call.status = -1;  // lost
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

static vending_glue::PinMotor g_motor(kMotorPins, kSlots, MOTOR_ACTIVE_HIGH);
static vending_glue::BeamSensor g_sensor;
static vending_glue::NvsStorage g_journal(g_prefs);
static NvsKeys g_keys;
static vending::X25519KeyAgreement g_x25519(vending_glue::fillRandom);  // mbedTLS, via the core
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
  g_nextJoin = now + g_wifiBackoff.nextDelay(vending_glue::randomWord());
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
  vending_glue::startWatchdog(WATCHDOG_SECONDS);  // a refusal is printed; the board still serves
  if (!g_prefs.begin("vending", false)) Serial.println("ERROR: NVS did not open: vends will be refused");
  g_sensor.begin(SENSOR_PIN, SENSOR_BROKEN_LEVEL);
  vending_glue::deviceId(g_dev);
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
  vending_glue::feedWatchdog();
  uint32_t now = millis();
  g_engine->poll(now);
  humanCommands();
  if (STATUS_LED_PIN >= 0) {
    // On while a motor turns; slow blink online; fast blink while joining, looking or pairing.
    uint32_t period = g_board->phase() == vending::WifiBoard::Phase::Online ? 1000 : 150;
    digitalWrite(STATUS_LED_PIN, g_engine->busy() || (now / period) % 2 ? HIGH : LOW);
  }
  keepWifiJoined(now);
  // A network exchange blocks (a long-poll: WifiBoard::maxBlockMs, checked against the
  // watchdog above); never while a motor turns, so the vend timing stays exact.
  if (!g_engine->busy()) g_board->step(now);
}
