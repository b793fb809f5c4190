// Unit tests of the plain C++ core, run on the host: core_tests VECTORS_TSV
// Prints one line per failed check and a summary; exits non-zero when anything failed.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ctype.h>

#include <algorithm>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "vending_core.h"

using namespace vending;

static int g_checks = 0;
static int g_failures = 0;
static const char* g_test = "";

#define CHECK(cond, ...)                                              \
  do {                                                                \
    ++g_checks;                                                       \
    if (!(cond)) {                                                    \
      ++g_failures;                                                   \
      printf("FAIL %s (%s:%d) %s: ", g_test, __FILE__, __LINE__, #cond); \
      printf(__VA_ARGS__);                                            \
      printf("\n");                                                   \
    }                                                                 \
  } while (0)

// ---------------------------------------------------------------- vectors file

struct Vector {
  int lineNo;
  std::vector<std::string> cols;
};

static std::string unescape(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 >= text.size()) {
      out += text[i];
      continue;
    }
    char c = text[++i];
    if (c == '\\') {
      out += '\\';
    } else if (c == 't') {
      out += '\t';
    } else if (c == 'r') {
      out += '\r';
    } else if (c == 'n') {
      out += '\n';
    } else if (c == 'x' && i + 2 < text.size() + 1) {
      out += static_cast<char>(strtol(text.substr(i + 1, 2).c_str(), nullptr, 16));
      i += 2;
    }
  }
  return out;
}

static std::vector<Vector> loadVectors(const char* path) {
  std::vector<Vector> rows;
  FILE* f = fopen(path, "rb");
  if (!f) {
    printf("FAIL cannot open %s\n", path);
    exit(2);
  }
  std::string content;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) content.append(buf, n);
  fclose(f);
  int lineNo = 0;
  size_t pos = 0;
  while (pos <= content.size()) {
    size_t end = content.find('\n', pos);
    if (end == std::string::npos) end = content.size();
    std::string line = content.substr(pos, end - pos);
    ++lineNo;
    pos = end + 1;
    if (line.empty() || line[0] == '#') continue;
    Vector v;
    v.lineNo = lineNo;
    size_t start = 0;
    while (true) {
      size_t tab = line.find('\t', start);
      v.cols.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
      if (tab == std::string::npos) break;
      start = tab + 1;
    }
    rows.push_back(v);
  }
  return rows;
}

static ParseStatus parse(const std::string& line, Message& msg) {
  return parseLine(reinterpret_cast<const uint8_t*>(line.data()), line.size(), msg);
}

static void testVectors(const char* path) {
  std::vector<Vector> rows = loadVectors(path);
  int counts[4] = {0, 0, 0, 0};
  for (const Vector& v : rows) {
    const std::string& kind = v.cols[0];
    if (kind == "crc") {
      g_test = "crc vector matches";
      ++counts[0];
      std::string input = unescape(v.cols[1]);
      char hex[5] = {0};
      crc16Hex(crc16(reinterpret_cast<const uint8_t*>(input.data()), input.size()), hex);
      CHECK(v.cols[2] == hex, "line %d: got %s want %s", v.lineNo, hex, v.cols[2].c_str());
    } else if (kind == "valid") {
      g_test = "valid vector parses and formats canonically";
      ++counts[1];
      std::string line = unescape(v.cols[1]);
      Message msg;
      ParseStatus status = parse(line, msg);
      CHECK(status == ParseStatus::Machine, "line %d: status %s", v.lineNo, nakReason(status));
      if (status != ParseStatus::Machine) continue;
      CHECK(v.cols[2] == verbName(msg.verb()), "line %d: verb %s", v.lineNo, verbName(msg.verb()));
      std::string body = v.cols[2] + (v.cols[3] == "-" ? "" : " " + v.cols[3]);
      char hex[5] = {0};
      crc16Hex(crc16(reinterpret_cast<const uint8_t*>(body.data()), body.size()), hex);
      std::string want = "$" + body + "*" + hex;
      char out[300];
      size_t n = formatCanonical(msg, out, sizeof(out));
      CHECK(n == want.size() && std::string(out, n) == want, "line %d: formatted %.*s", v.lineNo,
            static_cast<int>(n), out);
    } else if (kind == "human") {
      g_test = "human vector is a human line";
      ++counts[2];
      Message msg;
      CHECK(parse(unescape(v.cols[1]), msg) == ParseStatus::Human, "line %d", v.lineNo);
    } else if (kind == "invalid") {
      g_test = "invalid vector gets its NAK reason";
      ++counts[3];
      Message msg;
      ParseStatus status = parse(unescape(v.cols[1]), msg);
      CHECK(v.cols[2] == nakReason(status), "line %d: got '%s' want %s", v.lineNo,
            nakReason(status), v.cols[2].c_str());
    } else {
      g_test = "vector kind is known";
      CHECK(false, "line %d: kind %s", v.lineNo, kind.c_str());
    }
  }
  g_test = "the vectors file has every kind";
  CHECK(counts[0] > 5 && counts[1] > 10 && counts[2] > 5 && counts[3] > 20, "%d %d %d %d",
        counts[0], counts[1], counts[2], counts[3]);
  printf("vectors: %d crc, %d valid, %d human, %d invalid\n", counts[0], counts[1], counts[2],
         counts[3]);

  g_test = "the framer splits vector lines fed one byte at a time";
  std::string stream;
  std::vector<std::string> expected;
  int tooLong = 0;
  for (const Vector& v : rows) {
    if (v.cols[0] != "valid" && v.cols[0] != "human" && v.cols[0] != "invalid") continue;
    std::string line = unescape(v.cols[1]);
    stream += line + "\r\n\n";
    if (v.cols[0] == "invalid" && v.cols[2] == "too_long") {
      ++tooLong;
    } else {
      expected.push_back(line);
    }
  }
  LineFramer framer;
  std::vector<std::string> got;
  int gotTooLong = 0;
  for (char c : stream) {
    LineFramer::Event e = framer.push(static_cast<uint8_t>(c));
    if (e == LineFramer::Line) got.push_back(std::string(reinterpret_cast<const char*>(framer.line()), framer.length()));
    if (e == LineFramer::TooLong) ++gotTooLong;
  }
  CHECK(got == expected, "%zu lines, want %zu", got.size(), expected.size());
  CHECK(gotTooLong == tooLong, "%d too long, want %d", gotTooLong, tooLong);
}

// ---------------------------------------------------------------- codec extras

static void testCodec() {
  g_test = "every single changed byte of a line is caught";
  const std::string good = "$VEND id=A1B2C3D4E5F6 slot=3*CE87";
  Message msg;
  CHECK(parse(good, msg) == ParseStatus::Machine, "good line");
  int caught = 0, total = 0;
  for (size_t i = 1; i < good.size(); ++i) {
    for (int b = 0; b < 8; ++b) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << b));
      if (bad[i] == '\n') continue;
      ++total;
      if (parse(bad, msg) != ParseStatus::Machine) ++caught;
    }
  }
  CHECK(caught == total, "%d of %d caught", caught, total);

  g_test = "the line writer makes lines the parser accepts";
  LineWriter w;
  w.begin("DONE");
  w.field("id", "3F2A9C01B7E4");
  w.field("result", "failed");
  w.field("reason", "jam");
  CHECK(w.finish(), "finish");
  CHECK(std::string(w.data(), w.size()) == "$DONE id=3F2A9C01B7E4 result=failed reason=jam*1F71\n",
        "%s", w.data());
  w.begin("VEND");
  w.field("id", "7");
  w.field("slot", 65535u);
  CHECK(w.finish() && std::string(w.data()) == "$VEND id=7 slot=65535*59E7\n", "%s", w.data());
  w.begin("PING");
  for (int i = 0; i < 40; ++i) w.field("pad", "AAAAAAAAA");
  CHECK(!w.finish(), "an over-long line is refused");
}

// ---------------------------------------------------------------- fakes

struct Recorder {
  std::vector<std::string> events;
};

struct FakeMotor : Motor {
  Recorder& r;
  explicit FakeMotor(Recorder& rec) : r(rec) {}
  void allOff() override { r.events.push_back("alloff"); }
  void start(uint16_t slot) override { r.events.push_back("start " + std::to_string(slot)); }
  void stop(uint16_t slot) override { r.events.push_back("stop " + std::to_string(slot)); }
};

struct FakeSensor : Sensor {
  bool seen = false;
  void arm(uint16_t) override { seen = false; }
  bool itemSeen() override { return seen; }
};

struct MemStorage : Storage {
  Recorder& r;
  std::string blob;
  bool fail = false;
  explicit MemStorage(Recorder& rec) : r(rec) {}
  size_t load(char* buf, size_t cap) override {
    size_t n = blob.size() < cap ? blob.size() : cap;
    memcpy(buf, blob.data(), n);
    return n;
  }
  bool save(const char* data, size_t len) override {
    if (fail) return false;
    blob.assign(data, len);
    r.events.push_back("save");
    return true;
  }
};

struct Out : LineOutput {
  Recorder& r;
  explicit Out(Recorder& rec) : r(rec) {}
  void write(const char* data, size_t len) override {
    std::string line(data, len);
    r.events.push_back("> " + line.substr(0, line.size() - 1));
  }
};

struct Rig {
  Recorder rec;
  FakeMotor motor{rec};
  FakeSensor sensor;
  MemStorage storage{rec};
  Out out{rec};
  EngineConfig config;
  VendEngine* engine = nullptr;
  SerialBoard* board = nullptr;
  BoardIdentity id{"ESP32_6CC8404FE03C", "2.0.0", "5E1F0A3C"};

  explicit Rig(bool withSensor = false) {
    config.runMs = 100;
    config.useSensor = withSensor;
    config.jamMs = 500;
    config.maxRunMs = 1000;
    make();
  }
  void make() {
    delete board;
    delete engine;
    engine = new VendEngine(config, motor, &sensor, storage);
    board = new SerialBoard(*engine, out, id);
  }
  ~Rig() {
    delete board;
    delete engine;
  }
  void send(const std::string& body, uint32_t now) {
    LineWriter w;
    // Bodies in tests are "VERB k=v ..." strings; frame them with their CRC.
    std::string verb = body.substr(0, body.find(' '));
    w.begin(verb.c_str());
    size_t pos = body.find(' ');
    while (pos != std::string::npos) {
      size_t next = body.find(' ', pos + 1);
      std::string tok = body.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
      size_t eq = tok.find('=');
      w.field(tok.substr(0, eq).c_str(), tok.substr(eq + 1).c_str());
      pos = next;
    }
    w.finish();
    board->feed(reinterpret_cast<const uint8_t*>(w.data()), w.size(), now);
  }
  void raw(const std::string& line, uint32_t now) {
    std::string l = line + "\n";
    board->feed(reinterpret_cast<const uint8_t*>(l.data()), l.size(), now);
  }
  std::vector<std::string> take() {
    std::vector<std::string> e = rec.events;
    rec.events.clear();
    return e;
  }
  int count(const std::vector<std::string>& e, const std::string& prefix) {
    int n = 0;
    for (const std::string& s : e) n += s.compare(0, prefix.size(), prefix) == 0;
    return n;
  }
};

static std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += x + " | ";
  return s;
}

static void testBoard() {
  {
    g_test = "boot turns every motor off first, then announces ID";
    Rig rig;
    rig.board->begin(0);
    std::vector<std::string> e = rig.take();
    CHECK(e.size() == 4 && e[0] == "alloff" && e[3].find("> $ID dev=ESP32_6CC8404FE03C fw=2.0.0 proto=2 slots=5 boot=5E1F0A3C*") == 0,
          "%s", join(e).c_str());
  }
  {
    g_test = "a vend persists running before ACK and starts the motor after it";
    Rig rig;
    rig.board->begin(0);
    rig.take();
    rig.send("VEND id=3F2A9C01B7E4 slot=3", 10);
    std::vector<std::string> e = rig.take();
    CHECK(e.size() == 3 && e[0] == "save" && e[1] == "> $ACK id=3F2A9C01B7E4*20FA" && e[2] == "start 3",
          "%s", join(e).c_str());
    CHECK(rig.storage.blob.find("3F2A9C01B7E4 3 running -") != std::string::npos, "%s", rig.storage.blob.c_str());
    rig.board->poll(109);
    CHECK(rig.take().empty(), "still turning at 99 ms");
    rig.board->poll(110);
    e = rig.take();
    CHECK(e.size() == 3 && e[0] == "stop 3" && e[1] == "save" && e[2] == "> $DONE id=3F2A9C01B7E4 result=success*08A4",
          "%s", join(e).c_str());

    g_test = "a repeated id is answered from memory without a second motor run";
    rig.send("VEND id=3F2A9C01B7E4 slot=3", 200);
    e = rig.take();
    CHECK(rig.count(e, "start") == 0 && e.size() == 2 && e[1] == "> $DONE id=3F2A9C01B7E4 result=success*08A4",
          "%s", join(e).c_str());
  }
  {
    g_test = "a repeat while running gets only the ACK; busy refuses another id";
    Rig rig;
    rig.board->begin(0);
    rig.send("VEND id=A slot=1", 0);
    rig.take();
    rig.send("VEND id=A slot=1", 5);
    std::vector<std::string> e = rig.take();
    CHECK(e.size() == 1 && e[0].find("> $ACK id=A*") == 0, "%s", join(e).c_str());
    rig.send("VEND id=B slot=2", 6);
    e = rig.take();
    CHECK(e.size() == 3 && e[2].find("> $DONE id=B result=failed reason=busy*") == 0, "%s", join(e).c_str());
    rig.send("QUERY id=A", 7);
    e = rig.take();
    CHECK(e.size() == 1 && e[0].find("> $STATE id=A state=running*") == 0, "%s", join(e).c_str());
    rig.send("PING", 8);
    e = rig.take();
    CHECK(e.size() == 1 && e[0].find("> $PONG boot=5E1F0A3C state=busy*") == 0, "%s", join(e).c_str());
  }
  {
    g_test = "a reboot mid-vend reports interrupted and never runs the motor again";
    Rig rig;
    rig.board->begin(0);
    rig.send("VEND id=X1 slot=2", 0);
    rig.take();
    rig.id.boot = "9D04C2B7";
    rig.make();  // power cut: the RAM is gone, the storage blob is not
    rig.board->begin(0);
    std::vector<std::string> e = rig.take();
    CHECK(e[0] == "alloff" && e[1] == "save", "%s", join(e).c_str());
    CHECK(rig.storage.blob.find("X1 2 interrupted -") != std::string::npos, "%s", rig.storage.blob.c_str());
    rig.send("QUERY id=X1", 1);
    rig.send("VEND id=X1 slot=2", 2);
    rig.board->poll(5000);
    e = rig.take();
    CHECK(e.size() == 3 && e[0].find("> $STATE id=X1 state=interrupted*") == 0 &&
              e[1].find("> $ACK id=X1*") == 0 && e[2].find("> $STATE id=X1 state=interrupted*") == 0,
          "%s", join(e).c_str());
  }
  {
    g_test = "refusals: not ready before boot, invalid slot, both remembered";
    Rig rig;
    rig.send("VEND id=N slot=1", 0);
    rig.board->begin(0);
    rig.take();
    rig.send("VEND id=Z slot=0", 1);
    rig.send("VEND id=N slot=1", 2);
    std::vector<std::string> e = rig.take();
    CHECK(rig.count(e, "start") == 0, "%s", join(e).c_str());
    CHECK(rig.count(e, "> $DONE id=Z result=failed reason=invalid_slot*") == 1, "%s", join(e).c_str());
    CHECK(rig.count(e, "> $DONE id=N result=failed reason=not_ready*") == 1, "%s", join(e).c_str());
  }
  {
    g_test = "the memory forgets the oldest of 17 ids";
    Rig rig;
    rig.board->begin(0);
    uint32_t t = 0;
    for (int i = 0; i < 17; ++i) {
      rig.send("VEND id=I" + std::to_string(i) + " slot=1", t);
      rig.board->poll(t + 100);
      t += 200;
    }
    rig.take();
    rig.send("QUERY id=I0", t);
    rig.send("QUERY id=I1", t);
    std::vector<std::string> e = rig.take();
    CHECK(e.size() == 2 && e[0].find("state=unseen") != std::string::npos &&
              e[1].find("state=success") != std::string::npos,
          "%s", join(e).c_str());
    CHECK(rig.engine->memory().size() == 16, "%zu", rig.engine->memory().size());
  }
  {
    g_test = "a NAK gets the last machine line again, at most 3 times";
    Rig rig;
    rig.board->begin(0);
    rig.take();
    for (int i = 0; i < 5; ++i) rig.send("NAK reason=crc", 1);
    std::vector<std::string> e = rig.take();
    CHECK(e.size() == 3 && rig.count(e, "> $ID ") == 3, "%s", join(e).c_str());
    rig.raw("$PING*0000", 2);
    rig.raw("$" + std::string(300, 'A'), 2);
    rig.raw(std::string(300, 'h'), 2);
    rig.raw("$REBOOT*7210", 2);
    e = rig.take();
    CHECK(e.size() == 3 && e[0] == "> $NAK reason=crc*A5C8" && e[1].find("> $NAK reason=too_long*") == 0 &&
              e[2].find("> $NAK reason=unknown_verb*") == 0,
          "%s", join(e).c_str());
  }
  {
    g_test = "with a sensor: an item falling is success, none is a jam";
    Rig rig(true);
    rig.board->begin(0);
    rig.send("VEND id=S1 slot=1", 0);
    rig.board->poll(200);
    rig.sensor.seen = true;
    rig.board->poll(210);
    std::vector<std::string> e = rig.take();
    CHECK(rig.count(e, "> $DONE id=S1 result=success*") == 1, "%s", join(e).c_str());
    rig.send("VEND id=S2 slot=2", 300);  // arm() clears the earlier detection
    rig.board->poll(799);
    rig.board->poll(800);
    e = rig.take();
    CHECK(rig.count(e, "> $DONE id=S2 result=failed reason=jam*") == 1 && rig.count(e, "stop 2") == 1,
          "%s", join(e).c_str());
  }
  {
    g_test = "the hard maximum run time cuts a motor configured to run longer";
    Rig rig;
    rig.config.slotRunMs[0] = 60000;
    rig.make();
    rig.board->begin(0);
    rig.send("VEND id=W slot=1", 0);
    rig.board->poll(999);
    rig.board->poll(1000);
    std::vector<std::string> e = rig.take();
    CHECK(rig.count(e, "> $DONE id=W result=failed reason=motor_fault*") == 1, "%s", join(e).c_str());
  }
  {
    g_test = "a failed storage write refuses the vend without turning the motor";
    Rig rig;
    rig.board->begin(0);
    rig.storage.fail = true;
    rig.send("VEND id=F slot=1", 0);
    std::vector<std::string> e = rig.take();
    CHECK(rig.count(e, "start") == 0 && rig.count(e, "> $DONE id=F result=failed reason=not_ready*") == 1,
          "%s", join(e).c_str());
  }
  {
    g_test = "human commands answer in words and a hand vend makes the board busy";
    Rig rig;
    rig.board->begin(0);
    rig.take();
    rig.raw("  vend:2 ", 0);
    rig.send("VEND id=H slot=1", 1);
    rig.raw("status", 2);
    rig.board->poll(100);
    std::vector<std::string> e = rig.take();
    CHECK(rig.count(e, "> VENDING:2") == 1 && rig.count(e, "> $DONE id=H result=failed reason=busy*") == 1 &&
              rig.count(e, "> STATUS:BUSY slot=2") == 1 && rig.count(e, "> VEND_SUCCESS:2") == 1,
          "%s", join(e).c_str());
    rig.raw("VEND:9", 200);
    rig.raw("bogus", 200);
    e = rig.take();
    CHECK(rig.count(e, "> ERROR: invalid slot (1..5)") == 1 &&
              rig.count(e, "> ERROR: Unknown command (type HELP)") == 1,
          "%s", join(e).c_str());
  }
}

// ---------------------------------------------------------------- memory blob

static void testMemoryBlob() {
  g_test = "the memory blob round-trips and skips unreadable lines";
  OutcomeMemory m;
  m.remember("A1", 1, EntryState::Success, "");
  m.remember("B2", 2, EntryState::Failed, "jam");
  m.remember("C3", 3, EntryState::Running, "");
  char blob[kMemoryBlobSize];
  size_t n = m.serialize(blob, sizeof(blob));
  std::string text(blob, n);
  text += "bad line here\nD4 99999999 success -\nE5 1 failed j*m\n";
  OutcomeMemory r;
  size_t interrupted = r.restore(text.data(), text.size());
  CHECK(interrupted == 1 && r.size() == 3, "%zu %zu", interrupted, r.size());
  CHECK(r.find("B2") && strcmp(r.find("B2")->reason, "jam") == 0, "reason kept");
  CHECK(r.find("C3") && r.find("C3")->state == EntryState::Interrupted, "running became interrupted");
  CHECK(r.restore("VMEM 9\nA 1 success -\n", 20) == 0 && r.size() == 0, "foreign header");
}

// ---------------------------------------------------------------- crypto and WiFi

static std::vector<uint8_t> bytesOf(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<uint8_t>(strtol(hex.substr(i, 2).c_str(), nullptr, 16)));
  return out;
}

static void testHmac() {
  g_test = "SHA-256 of abc";
  uint8_t d[32];
  sha256(reinterpret_cast<const uint8_t*>("abc"), 3, d);
  char hex[65];
  toHex(d, 32, hex);
  CHECK(std::string(hex) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "%s", hex);

  g_test = "HMAC-SHA256 matches RFC 4231";
  struct Case {
    std::string key, data, mac;
  };
  std::string aa131(131 * 2, 'a');
  const Case cases[] = {
      {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "4869205468657265",
       "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {"4a656665", "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {std::string(40, 'a'), std::string(100, 'd'),
       "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
      {aa131,
       "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a65204b6579202d2048617368204b6579204669727374",
       "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
  };
  for (const Case& c : cases) {
    std::vector<uint8_t> key = bytesOf(c.key), data = bytesOf(c.data);
    uint8_t mac[32];
    hmacSha256(key.data(), key.size(), data.data(), data.size(), mac);
    toHex(mac, 32, hex);
    CHECK(c.mac == hex, "key %s: %s", c.key.substr(0, 8).c_str(), hex);
  }
  // Test case 4 (key 0x01..0x19, 50 bytes of 0xcd) and 7 (long key, long data).
  {
    std::vector<uint8_t> key;
    for (int i = 1; i <= 25; ++i) key.push_back(static_cast<uint8_t>(i));
    std::vector<uint8_t> data(50, 0xcd);
    uint8_t mac[32];
    hmacSha256(key.data(), key.size(), data.data(), data.size(), mac);
    toHex(mac, 32, hex);
    CHECK(std::string(hex) == "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", "case 4 %s", hex);
  }
  {
    std::vector<uint8_t> key(131, 0xaa);
    const char* text =
        "This is a test using a larger than block-size key and a larger than block-size data. "
        "The key needs to be hashed before being used by the HMAC algorithm.";
    uint8_t mac[32];
    hmacSha256(key.data(), key.size(), reinterpret_cast<const uint8_t*>(text), strlen(text), mac);
    toHex(mac, 32, hex);
    CHECK(std::string(hex) == "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2", "case 7 %s", hex);
  }
  {
    g_test = "HMAC-SHA256 truncated to 128 bits matches RFC 4231 case 5";
    std::vector<uint8_t> key(20, 0x0c);
    const char* text = "Test With Truncation";
    uint8_t mac[32];
    hmacSha256(key.data(), key.size(), reinterpret_cast<const uint8_t*>(text), strlen(text), mac);
    toHex(mac, 16, hex);
    CHECK(std::string(hex) == "a3b6167473100ee06e0c796c2955552b", "%s", hex);
  }

  g_test = "back-off doubles up to its cap";
  Backoff backoff(1000, 30000);
  uint32_t delays[7];
  for (int i = 0; i < 7; ++i) delays[i] = backoff.nextDelay(0);
  CHECK(delays[0] == 1000 && delays[1] == 2000 && delays[4] == 16000 && delays[5] == 30000 && delays[6] == 30000,
        "%u %u %u %u", delays[0], delays[1], delays[5], delays[6]);
  CHECK(backoff.nextDelay(0xFFFFFFFFu) <= 37500, "jitter bounded");
}

#include "core_tests_wifi.inc"

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: core_tests PROTOCOL_V2_TSV WIFI_V2_TSV\n");
    return 2;
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);  // the failures so far survive a crash
  testVectors(argv[1]);
  testCodec();
  testMemoryBlob();
  testBoard();
  testHmac();
  testWifiVectors(argv[2]);
  testWifiExtras();
  testJson();
  testWifiBoard();
  testReadBody();
  printf("%d passed, %d failed\n", g_checks - g_failures, g_failures);
  return g_failures == 0 ? 0 : 1;
}
