// The serial board: protocol v2 machine lines and human commands over one byte stream.
// It follows vending.protocol.BoardLogic (src/vending/protocol/board.py) rule for rule.
#ifndef VC_SERIAL_BOARD_H
#define VC_SERIAL_BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "vc_codec.h"
#include "vc_engine.h"

namespace vending {

// Where the board's lines go (Serial on the ESP32, a pty or stdout on the host).
class LineOutput {
 public:
  virtual ~LineOutput() {}
  // data is one whole line including its "\n".
  virtual void write(const char* data, size_t len) = 0;
};

struct BoardIdentity {
  const char* dev;   // "ESP32_" + 12 uppercase hex digits of the MAC
  const char* fw;    // e.g. "2.0.0"
  const char* boot;  // 8 uppercase hex digits, random per boot
};

class SerialBoard : public EngineListener {
 public:
  SerialBoard(VendEngine& engine, LineOutput& out, const BoardIdentity& identity,
              uint8_t maxResends = 3);

  // Restore the memory (motors off first), print the banner, become ready, send ID.
  void begin(uint32_t now);
  // Bytes received from the server or a person, in any chunking.
  void feed(const uint8_t* data, size_t len, uint32_t now);
  // Let time pass: finishes vends (sensor, motor time, jam, watchdog).
  void poll(uint32_t now);

  void vendFinished(const char* id, uint16_t slot, bool success, const char* reason) override;

 private:
  void handleLine(const uint8_t* line, size_t len, uint32_t now);
  void handleMachine(const Message& msg, uint32_t now);
  void handleVend(const Message& msg, uint32_t now);
  void handleHuman(const uint8_t* line, size_t len, uint32_t now);
  void humanVend(const char* arg, uint32_t now);
  void sendMachine(LineWriter& writer);  // remembered for NAK re-sends
  void sendNak(const char* reason);
  void sendDone(const char* id, const Entry& entry);
  void sendState(const char* id, const char* state, const char* reason);
  void sendIdentity();
  void human(const char* text);
  void humanf2(const char* a, const char* b, const char* c = "", const char* d = "");
  void resend();

  VendEngine& engine_;
  LineOutput& out_;
  BoardIdentity identity_;
  uint8_t maxResends_;
  uint8_t resends_ = 0;
  LineFramer framer_;
  Message msg_;
  char last_[kMaxLine + 3] = {0};
  size_t lastLen_ = 0;
};

}  // namespace vending

#endif
