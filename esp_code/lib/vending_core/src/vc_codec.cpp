#include "vc_codec.h"

#include <string.h>

#include "vc_crc16.h"

namespace vending {

namespace {

enum class Kind : uint8_t { Rid, Uint, Token, Boot, Enum };

struct FieldSpec {
  const char* name;
  Kind kind;
  bool required;
  const char* const* choices;  // nullptr-terminated, for Enum
};

struct VerbSpec {
  Verb verb;
  const char* name;
  const FieldSpec* fields;
  uint8_t count;
};

const char* const kResults[] = {"success", "failed", nullptr};
const char* const kStates[] = {"unseen", "running", "success", "failed", "interrupted", nullptr};
const char* const kBoardStates[] = {"ready", "busy", nullptr};

const FieldSpec kIdFields[] = {{"dev", Kind::Token, true, nullptr},
                               {"fw", Kind::Token, true, nullptr},
                               {"proto", Kind::Uint, true, nullptr},
                               {"slots", Kind::Uint, true, nullptr},
                               {"boot", Kind::Boot, true, nullptr}};
const FieldSpec kVendFields[] = {{"id", Kind::Rid, true, nullptr}, {"slot", Kind::Uint, true, nullptr}};
const FieldSpec kRidFields[] = {{"id", Kind::Rid, true, nullptr}};
const FieldSpec kDoneFields[] = {{"id", Kind::Rid, true, nullptr},
                                 {"result", Kind::Enum, true, kResults},
                                 {"reason", Kind::Token, false, nullptr}};
const FieldSpec kNakFields[] = {{"reason", Kind::Token, true, nullptr}};
const FieldSpec kStateFields[] = {{"id", Kind::Rid, true, nullptr},
                                  {"state", Kind::Enum, true, kStates},
                                  {"reason", Kind::Token, false, nullptr}};
const FieldSpec kPongFields[] = {{"boot", Kind::Boot, true, nullptr},
                                 {"state", Kind::Enum, true, kBoardStates}};

const VerbSpec kVerbs[] = {
    {Verb::Hello, "HELLO", nullptr, 0},       {Verb::Id, "ID", kIdFields, 5},
    {Verb::Vend, "VEND", kVendFields, 2},     {Verb::Ack, "ACK", kRidFields, 1},
    {Verb::Done, "DONE", kDoneFields, 3},     {Verb::Nak, "NAK", kNakFields, 1},
    {Verb::Query, "QUERY", kRidFields, 1},    {Verb::State, "STATE", kStateFields, 3},
    {Verb::Ping, "PING", nullptr, 0},         {Verb::Pong, "PONG", kPongFields, 2},
};
const size_t kVerbCount = sizeof(kVerbs) / sizeof(kVerbs[0]);

const VerbSpec* specOf(Verb verb) {
  for (size_t i = 0; i < kVerbCount; ++i) {
    if (kVerbs[i].verb == verb) return &kVerbs[i];
  }
  return nullptr;
}

bool isUpperHex(uint8_t c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }
bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isAlnum(char c) { return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isKeyChar(char c) { return (c >= 'a' && c <= 'z') || c == '_'; }
bool isValueChar(char c) { return isAlnum(c) || c == '_' || c == '.' || c == ':' || c == '-'; }

bool allOf(const char* text, bool (*pred)(char)) {
  if (*text == '\0') return false;
  for (; *text; ++text) {
    if (!pred(*text)) return false;
  }
  return true;
}

bool isUint(const char* text) {
  // One spelling only: 0, or 1..65535 without leading zeros.
  size_t n = strlen(text);
  if (n == 0 || n > 5 || !allOf(text, isDigit)) return false;
  if (n > 1 && text[0] == '0') return false;
  unsigned long value = 0;
  for (size_t i = 0; i < n; ++i) value = value * 10 + static_cast<unsigned long>(text[i] - '0');
  return value <= 65535UL;
}

bool isBootId(const char* text) {
  if (strlen(text) != 8) return false;
  for (size_t i = 0; i < 8; ++i) {
    if (!isUpperHex(static_cast<uint8_t>(text[i]))) return false;
  }
  return true;
}

bool inChoices(const char* text, const char* const* choices) {
  for (; *choices; ++choices) {
    if (strcmp(text, *choices) == 0) return true;
  }
  return false;
}

bool valueOk(const FieldSpec& spec, const char* value) {
  switch (spec.kind) {
    case Kind::Rid: return isRequestId(value);
    case Kind::Uint: return isUint(value);
    case Kind::Boot: return isBootId(value);
    case Kind::Enum: return inChoices(value, spec.choices);
    case Kind::Token: return isValueToken(value);
  }
  return false;
}

bool isSpecField(const VerbSpec& spec, const char* key) {
  for (uint8_t i = 0; i < spec.count; ++i) {
    if (strcmp(spec.fields[i].name, key) == 0) return true;
  }
  return false;
}

// "reason" is required exactly when result/state is "failed" (DONE, STATE).
bool reasonRuleOk(const Message& msg) {
  const char* word = nullptr;
  if (msg.verb() == Verb::Done) word = msg.get("result");
  if (msg.verb() == Verb::State) word = msg.get("state");
  if (word == nullptr) return true;
  bool failed = strcmp(word, "failed") == 0;
  return failed == (msg.get("reason") != nullptr);
}

}  // namespace

bool isRequestId(const char* text) { return strlen(text) <= kMaxIdLen && allOf(text, isAlnum); }
bool isValueToken(const char* text) { return allOf(text, isValueChar); }

const char* nakReason(ParseStatus status) {
  switch (status) {
    case ParseStatus::TooLong: return "too_long";
    case ParseStatus::Syntax: return "syntax";
    case ParseStatus::Crc: return "crc";
    case ParseStatus::UnknownVerb: return "unknown_verb";
    default: return "";
  }
}

const char* verbName(Verb verb) {
  const VerbSpec* spec = specOf(verb);
  return spec ? spec->name : "";
}

const char* Message::get(const char* wanted) const {
  for (size_t i = 0; i < count_; ++i) {
    if (strcmp(key(i), wanted) == 0) return value(i);
  }
  return nullptr;
}

uint16_t Message::getUint(const char* wanted) const {
  const char* text = get(wanted);
  unsigned long value = 0;
  for (; text && *text; ++text) value = value * 10 + static_cast<unsigned long>(*text - '0');
  return static_cast<uint16_t>(value);
}

ParseStatus parseLine(const uint8_t* line, size_t len, Message& out) {
  out.verb_ = Verb::None;
  out.count_ = 0;
  if (len > 0 && line[len - 1] == '\n') --len;
  if (len > 0 && line[len - 1] == '\r') --len;
  if (len > kMaxLine) return ParseStatus::TooLong;
  if (len == 0 || line[0] != '$') return ParseStatus::Human;
  size_t star = len;
  for (size_t i = len; i-- > 0;) {
    if (line[i] == '*') {
      star = i;
      break;
    }
  }
  if (star == len || len - star - 1 != 4) return ParseStatus::Syntax;
  for (size_t i = star + 1; i < len; ++i) {
    if (!isUpperHex(line[i])) return ParseStatus::Syntax;
  }
  const uint8_t* body = line + 1;
  size_t bodyLen = star - 1;
  for (size_t i = 0; i < bodyLen; ++i) {
    if (body[i] < 0x20 || body[i] > 0x7E) return ParseStatus::Syntax;
  }
  uint16_t received = 0;
  for (size_t i = star + 1; i < len; ++i) {
    uint8_t c = line[i];
    received = static_cast<uint16_t>((received << 4) | (c <= '9' ? c - '0' : c - 'A' + 10));
  }
  if (received != crc16(body, bodyLen)) return ParseStatus::Crc;

  // Split on single spaces in place: an empty token (double or trailing space) is an error.
  memcpy(out.body_, body, bodyLen);
  out.body_[bodyLen] = '\0';
  char* verbEnd = strchr(out.body_, ' ');
  if (verbEnd) *verbEnd = '\0';
  const char* verbText = out.body_;
  for (const char* p = verbText; *p; ++p) {
    if (*p < 'A' || *p > 'Z') return ParseStatus::Syntax;
  }
  if (*verbText == '\0') return ParseStatus::Syntax;
  const VerbSpec* spec = nullptr;
  for (size_t i = 0; i < kVerbCount; ++i) {
    if (strcmp(kVerbs[i].name, verbText) == 0) spec = &kVerbs[i];
  }
  if (spec == nullptr) return ParseStatus::UnknownVerb;

  char* cursor = verbEnd ? verbEnd + 1 : nullptr;
  while (cursor) {
    char* next = strchr(cursor, ' ');
    if (next) *next = '\0';
    char* eq = strchr(cursor, '=');
    if (eq == nullptr || out.count_ >= kMaxFields) return ParseStatus::Syntax;
    *eq = '\0';
    if (!allOf(cursor, isKeyChar) || !isValueToken(eq + 1)) return ParseStatus::Syntax;
    if (out.get(cursor) != nullptr) return ParseStatus::Syntax;  // duplicate key
    out.keyAt_[out.count_] = static_cast<uint16_t>(cursor - out.body_);
    out.valueAt_[out.count_] = static_cast<uint16_t>(eq + 1 - out.body_);
    ++out.count_;
    cursor = next ? next + 1 : nullptr;
  }
  for (uint8_t i = 0; i < spec->count; ++i) {
    const char* value = out.get(spec->fields[i].name);
    if (value == nullptr) {
      if (spec->fields[i].required) return ParseStatus::Syntax;
      continue;
    }
    if (!valueOk(spec->fields[i], value)) return ParseStatus::Syntax;
  }
  out.verb_ = spec->verb;
  if (!reasonRuleOk(out)) {
    out.verb_ = Verb::None;
    return ParseStatus::Syntax;
  }
  return ParseStatus::Machine;
}

size_t formatCanonical(const Message& msg, char* out, size_t cap) {
  const VerbSpec* spec = specOf(msg.verb());
  if (spec == nullptr) return 0;
  LineWriter writer;
  writer.begin(spec->name);
  for (uint8_t i = 0; i < spec->count; ++i) {
    const char* value = msg.get(spec->fields[i].name);
    if (value) writer.field(spec->fields[i].name, value);
  }
  for (size_t i = 0; i < msg.fieldCount(); ++i) {
    if (!isSpecField(*spec, msg.key(i))) writer.field(msg.key(i), msg.value(i));
  }
  if (!writer.finish() || writer.size() > cap) return 0;
  size_t n = writer.size() - 1;  // without "\n"
  memcpy(out, writer.data(), n);
  if (n < cap) out[n] = '\0';
  return n;
}

void LineWriter::begin(const char* verb) {
  len_ = 0;
  ok_ = true;
  buf_[len_++] = '$';
  append(verb);
}

void LineWriter::append(const char* text) {
  size_t n = strlen(text);
  // Room is kept for "*CRC" so finish() can tell an over-long line from a full buffer.
  if (!ok_ || len_ + n > kMaxLine - 5) {
    ok_ = false;
    return;
  }
  memcpy(buf_ + len_, text, n);
  len_ += n;
}

void LineWriter::field(const char* key, const char* value) {
  append(" ");
  append(key);
  append("=");
  append(value);
}

void LineWriter::field(const char* key, unsigned value) {
  char digits[12];
  size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value && n < sizeof(digits) - 1);
  char text[12];
  for (size_t i = 0; i < n; ++i) text[i] = digits[n - 1 - i];
  text[n] = '\0';
  field(key, text);
}

bool LineWriter::finish() {
  if (!ok_) return false;
  uint16_t crc = vending::crc16(reinterpret_cast<const uint8_t*>(buf_ + 1), len_ - 1);
  buf_[len_++] = '*';
  crc16Hex(crc, buf_ + len_);
  len_ += 4;
  buf_[len_++] = '\n';
  buf_[len_] = '\0';
  return true;
}

void LineFramer::reset() {
  len_ = 0;
  discarding_ = false;
  lineDone_ = false;
}

LineFramer::Event LineFramer::push(uint8_t byte) {
  if (lineDone_) {
    len_ = 0;
    lineDone_ = false;
  }
  if (byte != '\n') {
    if (discarding_) return None;
    // One byte of slack: a line of kMaxLine bytes may still be followed by "\r".
    if (len_ >= kMaxLine + 1) {
      discarding_ = true;
      tooLongMachine_ = buf_[0] == '$';
      len_ = 0;
      return None;
    }
    buf_[len_++] = byte;
    return None;
  }
  if (discarding_) {
    reset();
    return TooLong;
  }
  if (len_ > 0 && buf_[len_ - 1] == '\r') --len_;
  if (len_ > kMaxLine) {
    tooLongMachine_ = buf_[0] == '$';
    len_ = 0;
    return TooLong;
  }
  if (len_ == 0) return None;
  buf_[len_] = '\0';
  lineDone_ = true;
  return Line;
}

}  // namespace vending
