// The host board: the firmware core behind a POSIX shell, for tests and for trying the
// server without hardware. The motor and sensor are fake; the outcome memory lives in a
// file (the ESP32 keeps it in NVS), so killing and restarting the process is a power cut.
//
//   host_board --memory FILE [--journal FILE] [--pty [--link PATH] | --scripted] [options]
//
// Modes: stdin/stdout (default); --pty opens a pseudo-terminal and prints "PTY <path>";
// --scripted reads stdin with a virtual clock (lines "@advance MS", "@boot",
// "@reboot BOOTID" drive it) so a conversation can be replayed byte for byte.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
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


// Appends one line per motor event, written straight to the file so a SIGKILL loses none.
class Journal {
 public:
  explicit Journal(const char* path) : fd_(path ? open(path, O_WRONLY | O_CREAT | O_APPEND, 0644) : -1) {}
  ~Journal() {
    if (fd_ >= 0) close(fd_);
  }
  void line(const std::string& text) {
    std::string l = text + "\n";
    if (fd_ >= 0) writeAll(fd_, l.data(), l.size());
  }

 private:
  int fd_;
};

class FakeMotor : public Motor {
 public:
  explicit FakeMotor(Journal& journal) : journal_(journal) {}
  // Lets the journal name the request id of each run (fault campaigns check "never twice").
  void setEngine(const VendEngine* engine) { engine_ = engine; }
  void allOff() override { journal_.line("alloff"); }
  void start(uint16_t slot) override {
    if (engine_ != nullptr && engine_->runningId()[0] != '\0') {
      journal_.line(std::string("run id=") + engine_->runningId() + " slot=" + std::to_string(slot));
    }
    journal_.line("start slot=" + std::to_string(slot));
  }
  void stop(uint16_t slot) override { journal_.line("stop slot=" + std::to_string(slot)); }

 private:
  Journal& journal_;
  const VendEngine* engine_ = nullptr;
};

// The beam sees an item dropMs after the motor starts, or never when the slot jams.
class FakeSensor : public Sensor {
 public:
  FakeSensor(const uint32_t& now, uint32_t dropMs, bool jam) : now_(now), dropMs_(dropMs), jam_(jam) {}
  void arm(uint16_t) override { armedAt_ = now_; }
  bool itemSeen() override { return !jam_ && now_ - armedAt_ >= dropMs_; }

 private:
  const uint32_t& now_;
  uint32_t dropMs_;
  bool jam_;
  uint32_t armedAt_ = 0;
};

class FileStorage : public Storage {
 public:
  explicit FileStorage(const std::string& path) : path_(path) {}
  size_t load(char* buf, size_t cap) override {
    FILE* f = fopen(path_.c_str(), "rb");
    if (!f) return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
  }
  bool save(const char* data, size_t len) override {
    // Write a temporary file, fsync, rename: a kill mid-write leaves the old or the new blob.
    std::string tmp = path_ + ".tmp";
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return false;
    writeAll(fd, data, len);
    bool ok = fsync(fd) == 0;
    close(fd);
    return ok && rename(tmp.c_str(), path_.c_str()) == 0;
  }

 private:
  std::string path_;
};

class FdOutput : public LineOutput {
 public:
  explicit FdOutput(int fd) : fd_(fd) {}
  void write(const char* data, size_t len) override { writeAll(fd_, data, len); }
  void setFd(int fd) { fd_ = fd; }

 private:
  int fd_;
};

struct Options {
  const char* memory = nullptr;
  const char* journal = nullptr;
  const char* link = nullptr;
  std::string dev = "ESP32_02484F535401";
  std::string fw = "2.0.0";
  std::string boot;
  bool pty = false;
  bool scripted = false;
  bool jam = false;
  long sensorMs = -1;
  EngineConfig engine;
};

void usage() {
  fprintf(stderr,
          "usage: host_board --memory FILE [--journal FILE] [--pty [--link PATH] | --scripted]\n"
          "  [--slots N] [--motor-ms N] [--max-run-ms N] [--sensor-ms N] [--jam] [--jam-ms N]\n"
          "  [--dev ESP32_XXXXXXXXXXXX] [--fw VERSION] [--boot XXXXXXXX]\n");
}

bool parseArgs(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    bool takes = true;
    if (a == "--memory" && v) o.memory = v;
    else if (a == "--journal" && v) o.journal = v;
    else if (a == "--link" && v) o.link = v;
    else if (a == "--dev" && v) o.dev = v;
    else if (a == "--fw" && v) o.fw = v;
    else if (a == "--boot" && v) o.boot = v;
    else if (a == "--slots" && v) o.engine.slots = static_cast<uint16_t>(atoi(v));
    else if (a == "--motor-ms" && v) o.engine.runMs = static_cast<uint32_t>(atol(v));
    else if (a == "--max-run-ms" && v) o.engine.maxRunMs = static_cast<uint32_t>(atol(v));
    else if (a == "--jam-ms" && v) o.engine.jamMs = static_cast<uint32_t>(atol(v));
    else if (a == "--sensor-ms" && v) o.sensorMs = atol(v);
    else {
      takes = false;
      if (a == "--pty") o.pty = true;
      else if (a == "--scripted") o.scripted = true;
      else if (a == "--jam") o.jam = true;
      else return false;
    }
    if (takes) ++i;
  }
  o.engine.useSensor = o.jam || o.sensorMs >= 0;
  return o.memory != nullptr && o.engine.slots >= 1;
}

std::string randomBootId() {
  unsigned char bytes[4] = {0, 0, 0, 0};
  int fd = open("/dev/urandom", O_RDONLY);
  if (fd >= 0) {
    if (read(fd, bytes, sizeof(bytes)) != static_cast<ssize_t>(sizeof(bytes))) bytes[0] ^= 0x5A;
    close(fd);
  }
  char text[9];
  snprintf(text, sizeof(text), "%02X%02X%02X%02X", bytes[0], bytes[1], bytes[2], bytes[3]);
  return text;
}

int openPty(const char* link) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) return -1;
  const char* name = ptsname(master);
  if (name == nullptr) return -1;
  // Hold the slave open ourselves: raw mode sticks, and a client closing it does not hang us up.
  int slave = open(name, O_RDWR | O_NOCTTY);
  if (slave < 0) return -1;
  struct termios tio;
  tcgetattr(slave, &tio);
  cfmakeraw(&tio);
  tcsetattr(slave, TCSANOW, &tio);
  fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
  if (link) {
    std::string tmp = std::string(link) + ".tmp";
    unlink(tmp.c_str());
    if (symlink(name, tmp.c_str()) != 0 || rename(tmp.c_str(), link) != 0) return -1;
  }
  printf("PTY %s\n", name);
  fflush(stdout);
  return master;
}

int runScripted(Options& o, FakeMotor& motor, FileStorage& storage) {
  uint32_t now = 0;
  FakeSensor sensor(now, o.sensorMs < 0 ? 0 : static_cast<uint32_t>(o.sensorMs), o.jam);
  FdOutput out(1);
  std::string boot = o.boot.empty() ? randomBootId() : o.boot;
  VendEngine* engine = new VendEngine(o.engine, motor, &sensor, storage);
  motor.setEngine(engine);
  BoardIdentity id{o.dev.c_str(), o.fw.c_str(), boot.c_str()};
  SerialBoard* board = new SerialBoard(*engine, out, id);
  char* line = nullptr;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, stdin)) > 0) {
    std::string text(line, static_cast<size_t>(n));
    if (text.compare(0, 9, "@advance ") == 0) {
      uint32_t until = now + static_cast<uint32_t>(atol(text.c_str() + 9));
      // Step in 1 ms so every deadline is seen at the millisecond it falls due.
      while (now != until) {
        ++now;
        board->poll(now);
      }
    } else if (text.compare(0, 5, "@boot") == 0) {
      board->begin(now);
    } else if (text.compare(0, 8, "@reboot ") == 0) {
      delete board;
      delete engine;
      boot = text.substr(8, 8);
      id.boot = boot.c_str();
      engine = new VendEngine(o.engine, motor, &sensor, storage);
      motor.setEngine(engine);
      board = new SerialBoard(*engine, out, id);
      board->begin(now);
    } else {
      board->feed(reinterpret_cast<const uint8_t*>(text.data()), text.size(), now);
    }
  }
  free(line);
  delete board;
  delete engine;
  return 0;
}

int runLive(Options& o, FakeMotor& motor, FileStorage& storage) {
  int inFd = 0;
  int outFd = 1;
  if (o.pty) {
    inFd = outFd = openPty(o.link);
    if (inFd < 0) {
      perror("host_board: cannot open a pty");
      return 1;
    }
  }
  uint32_t now = monotonicMs();
  FakeSensor sensor(now, o.sensorMs < 0 ? 0 : static_cast<uint32_t>(o.sensorMs), o.jam);
  FdOutput out(outFd);
  std::string boot = o.boot.empty() ? randomBootId() : o.boot;
  VendEngine engine(o.engine, motor, &sensor, storage);
  motor.setEngine(&engine);
  BoardIdentity id{o.dev.c_str(), o.fw.c_str(), boot.c_str()};
  SerialBoard board(engine, out, id);
  board.begin(now);
  bool inputOpen = true;
  while (!g_stop && (inputOpen || engine.busy())) {
    struct pollfd pfd = {inFd, POLLIN, 0};
    int ready = poll(&pfd, inputOpen ? 1 : 0, 5);
    now = monotonicMs();
    if (ready > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
      uint8_t buf[512];
      ssize_t n = read(inFd, buf, sizeof(buf));
      if (n > 0) {
        board.feed(buf, static_cast<size_t>(n), now);
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        inputOpen = o.pty;  // stdin at EOF: finish the running vend, then exit
        if (o.pty) usleep(5000);
      }
    }
    board.poll(now);
  }
  motor.allOff();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parseArgs(argc, argv, o)) {
    usage();
    return 2;
  }
  if (!o.boot.empty() && o.boot.size() != 8) {
    fprintf(stderr, "host_board: --boot wants 8 uppercase hex digits\n");
    return 2;
  }
  signal(SIGTERM, onSignal);
  signal(SIGINT, onSignal);
  signal(SIGPIPE, SIG_IGN);
  Journal journal(o.journal);
  FakeMotor motor(journal);
  FileStorage storage(o.memory);
  return o.scripted ? runScripted(o, motor, storage) : runLive(o, motor, storage);
}
