// Protocol v2 lines <-> messages (docs/protocol.md), and a byte-stream line framer.
#ifndef VC_CODEC_H
#define VC_CODEC_H

#include <stddef.h>
#include <stdint.h>

namespace vending {

const size_t kMaxLine = 256;    // bytes, without "\n" or "\r\n"
const size_t kMaxFields = 64;   // a 256-byte line cannot hold more "k=v " tokens
const size_t kMaxIdLen = 16;
const unsigned kProtocolVersion = 2;

enum class Verb : uint8_t { None, Hello, Id, Vend, Ack, Done, Nak, Query, State, Ping, Pong };

// What parseLine found. The last four are the NAK reasons of docs/protocol.md.
enum class ParseStatus : uint8_t { Machine, Human, TooLong, Syntax, Crc, UnknownVerb };

// The NAK reason word for a failed check ("crc", "syntax", ...); "" for Machine/Human.
const char* nakReason(ParseStatus status);

const char* verbName(Verb verb);

// A parsed machine line. Fields point into a private copy of the body.
class Message {
 public:
  Verb verb() const { return verb_; }
  size_t fieldCount() const { return count_; }
  const char* key(size_t i) const { return body_ + keyAt_[i]; }
  const char* value(size_t i) const { return body_ + valueAt_[i]; }
  // The value of key, or nullptr when the line has no such field.
  const char* get(const char* key) const;
  // For uint fields already validated by parseLine.
  uint16_t getUint(const char* key) const;

 private:
  friend ParseStatus parseLine(const uint8_t* line, size_t len, Message& out);
  Verb verb_ = Verb::None;
  char body_[kMaxLine + 1] = {0};
  uint8_t count_ = 0;
  uint16_t keyAt_[kMaxFields] = {0};
  uint16_t valueAt_[kMaxFields] = {0};
};

// Parses one line (terminator optional) and runs the checks of docs/protocol.md in order.
ParseStatus parseLine(const uint8_t* line, size_t len, Message& out);

// Writes msg as its canonical line "$BODY*CRC" (no newline) into out; returns the length,
// or 0 when it does not fit. Known fields come in canonical order, unknown ones after.
size_t formatCanonical(const Message& msg, char* out, size_t cap);

// Builds one outgoing machine line: begin(verb), field()..., finish() -> "$BODY*CRC\n".
class LineWriter {
 public:
  void begin(const char* verb);
  void field(const char* key, const char* value);
  void field(const char* key, unsigned value);
  // Appends "*CRC\n"; returns false when the line overflowed (nothing should be sent).
  bool finish();
  const char* data() const { return buf_; }
  size_t size() const { return len_; }

 private:
  void append(const char* text);
  char buf_[kMaxLine + 3] = {0};
  size_t len_ = 0;
  bool ok_ = false;
};

// Splits a byte stream into lines, like vending.protocol.LineFramer, one byte at a time.
// An over-long line is dropped up to its newline without being buffered.
class LineFramer {
 public:
  enum Event : uint8_t { None, Line, TooLong };
  Event push(uint8_t byte);
  // The line completed by the last push() that returned Line (no terminator).
  const uint8_t* line() const { return buf_; }
  size_t length() const { return len_; }
  // For TooLong: whether the discarded line started with '$' (then it is NAKed).
  bool tooLongWasMachine() const { return tooLongMachine_; }
  void reset();

 private:
  uint8_t buf_[kMaxLine + 2] = {0};
  size_t len_ = 0;
  bool discarding_ = false;
  bool tooLongMachine_ = false;
  bool lineDone_ = false;
};

// Character classes of the grammar, shared with the memory and WiFi code.
bool isRequestId(const char* text);
bool isValueToken(const char* text);

}  // namespace vending

#endif
