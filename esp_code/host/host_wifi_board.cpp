// The host WiFi board: the firmware core's WifiBoard behind a POSIX shell (UDP and a minimal
// HTTP/1.1 client over TCP), with a fake motor. Its "NVS" (journal, secret, boot count) lives
// in files, so killing and restarting the process is a power cut. For tests and for trying
// the server without hardware; network only where --discover points (tests: 127.0.0.1).
//
//   host_wifi_board --state-dir DIR --discover HOST:PORT [--dev ID] [--fw V] [--slots N]
//                   [--motor-ms N] [--max-run-ms N] [--poll-wait S] [--retry-ms N]
//
// Console lines (what the chip prints on its serial monitor) go to stdout, one per line.
// DIR/motor.log gets one line per motor event ("start slot=N", "stop slot=N").
#include <arpa/inet.h>
#include <errno.h>
#include <ctype.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <string>

#include "posix_shell.h"
#include "vending_core.h"

using namespace vending;

namespace {

using host::g_stop;
using host::monotonicMs;
using host::onSignal;
using host::writeAll;


std::string readFile(const std::string& path) {
  std::string out;
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  fclose(f);
  return out;
}

// Temporary file, fsync, rename: a kill mid-write leaves the old or the new content.
bool writeFileDurably(const std::string& path, const std::string& data) {
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return false;
  bool ok = writeAll(fd, data.data(), data.size()) && fsync(fd) == 0;
  close(fd);
  return ok && rename(tmp.c_str(), path.c_str()) == 0;
}

class FakeMotor : public Motor {
 public:
  explicit FakeMotor(const std::string& path) : fd_(open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644)) {}
  ~FakeMotor() override {
    if (fd_ >= 0) close(fd_);
  }
  void allOff() override { line("alloff"); }
  void start(uint16_t slot) override { line("start slot=" + std::to_string(slot)); }
  void stop(uint16_t slot) override { line("stop slot=" + std::to_string(slot)); }

 private:
  void line(const std::string& text) {
    std::string l = text + "\n";
    if (fd_ >= 0) writeAll(fd_, l.data(), l.size());  // straight to the file: SIGKILL loses none
  }
  int fd_;
};

class FileJournal : public Storage {
 public:
  explicit FileJournal(const std::string& path) : path_(path) {}
  size_t load(char* buf, size_t cap) override {
    std::string data = readFile(path_);
    size_t n = data.size() < cap ? data.size() : cap;
    memcpy(buf, data.data(), n);
    return n;
  }
  bool save(const char* data, size_t len) override { return writeFileDurably(path_, std::string(data, len)); }

 private:
  std::string path_;
};

// "boot N" and "secret HEX" lines in one file, as the chip keeps two NVS keys.
class FileNvs : public WifiNvs {
 public:
  explicit FileNvs(const std::string& path) : path_(path) {
    std::string text = readFile(path_);
    unsigned long boot = 0;
    char hex[65] = {0};
    const char* b = strstr(text.c_str(), "boot ");
    if (b) boot = strtoul(b + 5, nullptr, 10);
    const char* s = strstr(text.c_str(), "secret ");
    if (s && sscanf(s + 7, "%64[0-9a-f]", hex) == 1 && strlen(hex) == 64) {
      has_ = fromHex(hex, secret_, 32);
    }
    boot_ = static_cast<uint32_t>(boot);
  }
  bool loadSecret(uint8_t secret[32]) override {
    if (has_) memcpy(secret, secret_, 32);
    return has_;
  }
  bool saveSecret(const uint8_t secret[32]) override {
    memcpy(secret_, secret, 32);
    has_ = true;
    return flush();
  }
  void eraseSecret() override {
    has_ = false;
    flush();
  }
  uint32_t loadBootCount() override { return boot_; }
  bool saveBootCount(uint32_t count) override {
    boot_ = count;
    return flush();
  }

 private:
  bool flush() {
    std::string text = "boot " + std::to_string(boot_) + "\n";
    if (has_) {
      char hex[65];
      toHex(secret_, 32, hex);
      text += std::string("secret ") + hex + "\n";
    }
    return writeFileDurably(path_, text);
  }
  std::string path_;
  uint8_t secret_[32] = {0};
  bool has_ = false;
  uint32_t boot_ = 0;
};

void urandom(uint8_t* out, size_t len) {
  int fd = open("/dev/urandom", O_RDONLY);
  size_t got = 0;
  while (fd >= 0 && got < len) {
    ssize_t n = read(fd, out + got, len - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (fd >= 0) close(fd);
  if (got < len) {
    fprintf(stderr, "host_wifi_board: cannot read /dev/urandom\n");
    exit(1);
  }
}

class StdoutConsole : public Console {
 public:
  void say(const char* text) override {
    printf("%s\n", text);
    fflush(stdout);
  }
};

class PosixLink : public WifiLink {
 public:
  PosixLink(const sockaddr_in& discovery) : discovery_(discovery) {}
  bool connected() override { return true; }
  void localIp(char out[16]) override { strcpy(out, "127.0.0.1"); }
  void random(uint8_t* out, size_t len) override { urandom(out, len); }

  bool sendDiscovery(const char* data, size_t len) override {
    if (udp_ >= 0) close(udp_);
    udp_ = socket(AF_INET, SOCK_DGRAM, 0);
    windowEnd_ = monotonicMs() + 500;
    return udp_ >= 0 && sendto(udp_, data, len, 0, reinterpret_cast<const sockaddr*>(&discovery_),
                               sizeof(discovery_)) == static_cast<ssize_t>(len);
  }

  int receiveDiscovery(char* buf, size_t cap) override {
    while (udp_ >= 0 && !g_stop) {
      int32_t left = static_cast<int32_t>(windowEnd_ - monotonicMs());
      if (left <= 0) break;
      pollfd p = {udp_, POLLIN, 0};
      if (::poll(&p, 1, left) > 0) {
        ssize_t n = recv(udp_, buf, cap, 0);
        if (n >= 0) return static_cast<int>(n);
      }
    }
    if (udp_ >= 0) close(udp_);
    udp_ = -1;
    return -1;
  }

  void http(const char* ip, uint16_t port, HttpCall& call) override {
    call.status = -1;
    call.responseLen = 0;
    call.signature[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return;
    timeval tv = {static_cast<time_t>(call.timeoutMs / 1000), static_cast<suseconds_t>((call.timeoutMs % 1000) * 1000)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    std::string request = std::string(call.method) + " " + call.target + " HTTP/1.1\r\nHost: " + ip + ":" +
                          std::to_string(port) + "\r\nConnection: close\r\nContent-Length: " +
                          std::to_string(call.bodyLen) + "\r\n";
    if (call.bodyLen) request += "Content-Type: application/json\r\n";
    for (size_t i = 0; i < call.headerCount; ++i) {
      request += std::string(call.headerName[i]) + ": " + call.headerValue[i] + "\r\n";
    }
    request += "\r\n";
    request.append(call.body, call.bodyLen);
    std::string reply;
    if (inet_pton(AF_INET, ip, &addr.sin_addr) == 1 &&
        connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        writeAll(fd, request.data(), request.size())) {
      char buf[4096];
      ssize_t n;
      while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) reply.append(buf, static_cast<size_t>(n));
      if (n < 0) reply.clear();  // timed out or reset: no answer
    }
    close(fd);
    parse(reply, call);
  }

 private:
  // Status line, the X-Signature and Content-Length headers, and the body.
  static void parse(const std::string& reply, HttpCall& call) {
    size_t end = reply.find("\r\n\r\n");
    int status = 0;
    if (end == std::string::npos || sscanf(reply.c_str(), "HTTP/1.%*d %d", &status) != 1) return;
    std::string head = reply.substr(0, end);
    std::string body = reply.substr(end + 4);
    size_t at = 0;
    while ((at = head.find("\r\n", at)) != std::string::npos) {
      at += 2;
      size_t eol = head.find("\r\n", at);
      std::string line = head.substr(at, eol == std::string::npos ? std::string::npos : eol - at);
      size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon), value = line.substr(colon + 1);
      while (!value.empty() && value[0] == ' ') value.erase(0, 1);
      for (char& c : name) c = static_cast<char>(tolower(c));
      if (name == "x-signature") snprintf(call.signature, sizeof(call.signature), "%s", value.c_str());
      if (name == "content-length") {
        size_t want = strtoul(value.c_str(), nullptr, 10);
        if (body.size() < want) return;  // cut short: no answer
        body.resize(want);
      }
      if (name == "transfer-encoding") return;  // not used by the server; refuse, do not guess
    }
    call.status = status;
    call.responseLen = body.size() < call.responseCap ? body.size() : call.responseCap - 1;
    memcpy(call.response, body.data(), call.responseLen);
    call.response[call.responseLen] = '\0';
  }

  sockaddr_in discovery_;
  int udp_ = -1;
  uint32_t windowEnd_ = 0;
};

void usage() {
  fprintf(stderr,
          "usage: host_wifi_board --state-dir DIR --discover HOST:PORT [--dev ID] [--fw V] [--slots N]\n"
          "                       [--motor-ms N] [--max-run-ms N] [--poll-wait S] [--retry-ms N]\n");
  exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir, dev = "ESP32_246F28A1B2C3", fw = "2.0.0-host", discover;
  EngineConfig engine;
  engine.memorySize = kMaxMemorySize;
  WifiBoardConfig wc;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) usage();
    const char* v = argv[++i];
    if (a == "--state-dir") {
      dir = v;
    } else if (a == "--discover") {
      discover = v;
    } else if (a == "--dev") {
      dev = v;
    } else if (a == "--fw") {
      fw = v;
    } else if (a == "--slots") {
      engine.slots = static_cast<uint16_t>(atoi(v));
    } else if (a == "--motor-ms") {
      engine.runMs = static_cast<uint32_t>(atol(v));
    } else if (a == "--max-run-ms") {
      engine.maxRunMs = static_cast<uint32_t>(atol(v));
    } else if (a == "--poll-wait") {
      wc.pollWaitS = static_cast<uint16_t>(atoi(v));
    } else if (a == "--retry-ms") {
      wc.retryBaseMs = wc.discoveryBaseMs = static_cast<uint32_t>(atol(v));
      wc.retryMaxMs = wc.discoveryMaxMs = 4 * wc.retryBaseMs;
    } else {
      usage();
    }
  }
  size_t colon = discover.rfind(':');
  sockaddr_in target;
  memset(&target, 0, sizeof(target));
  target.sin_family = AF_INET;
  if (dir.empty() || colon == std::string::npos ||
      inet_pton(AF_INET, discover.substr(0, colon).c_str(), &target.sin_addr) != 1) {
    usage();
  }
  target.sin_port = htons(static_cast<uint16_t>(atoi(discover.c_str() + colon + 1)));

  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = onSignal;  // no SA_RESTART: a held poll ends at once on SIGTERM
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  FakeMotor motor(dir + "/motor.log");
  FileJournal journal(dir + "/journal");
  FileNvs nvs(dir + "/nvs");
  X25519KeyAgreement keys(urandom);
  PosixLink link(target);
  StdoutConsole console;
  VendEngine vend(engine, motor, nullptr, journal);
  vend.begin();  // every motor off, the journal restored (a vend cut by the kill: interrupted)
  printf("VENDING BOARD fw=%s proto=2 dev=%s slots=%u transport=wifi (host)\n", fw.c_str(), dev.c_str(),
         static_cast<unsigned>(vend.slots()));
  fflush(stdout);
  wc.deviceId = dev.c_str();
  wc.firmware = fw.c_str();
  WifiBoard board(wc, vend, link, nvs, keys, console);
  vend.setListener(&board);
  board.begin();
  vend.setReady(true);
  while (!g_stop) {
    uint32_t now = monotonicMs();
    vend.poll(now);
    if (!vend.busy()) board.step(now);
    struct timespec pause = {0, 5 * 1000 * 1000};
    nanosleep(&pause, nullptr);
  }
  motor.allOff();
  return 0;
}
