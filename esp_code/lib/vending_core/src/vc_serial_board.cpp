#include "vc_serial_board.h"

#include <string.h>

namespace vending {

namespace {

const char kSeparator[] = "----------";

bool isSpace(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F); }

void utoa10(unsigned value, char* out) {
  char rev[12];
  size_t n = 0;
  do {
    rev[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value);
  for (size_t i = 0; i < n; ++i) out[i] = rev[n - 1 - i];
  out[n] = '\0';
}

}  // namespace

SerialBoard::SerialBoard(VendEngine& engine, LineOutput& out, const BoardIdentity& identity,
                         uint8_t maxResends)
    : engine_(engine), out_(out), identity_(identity), maxResends_(maxResends) {
  engine_.setListener(this);
}

void SerialBoard::begin(uint32_t now) {
  (void)now;
  engine_.begin();
  char slots[12];
  utoa10(engine_.slots(), slots);
  char banner[160];
  banner[0] = '\0';
  const char* parts[] = {"VENDING BOARD fw=", identity_.fw, " proto=2 dev=", identity_.dev,
                         " boot=", identity_.boot, " slots=", slots};
  for (const char* part : parts) strncat(banner, part, sizeof(banner) - strlen(banner) - 1);
  human(banner);
  human("Type HELP for commands.");
  engine_.setReady(true);
  sendIdentity();
}

void SerialBoard::feed(const uint8_t* data, size_t len, uint32_t now) {
  for (size_t i = 0; i < len; ++i) {
    LineFramer::Event event = framer_.push(data[i]);
    if (event == LineFramer::Line) {
      handleLine(framer_.line(), framer_.length(), now);
    } else if (event == LineFramer::TooLong && framer_.tooLongWasMachine()) {
      sendNak("too_long");
    }
  }
}

void SerialBoard::poll(uint32_t now) { engine_.poll(now); }

void SerialBoard::handleLine(const uint8_t* line, size_t len, uint32_t now) {
  ParseStatus status = parseLine(line, len, msg_);
  if (status == ParseStatus::Human) {
    handleHuman(line, len, now);
  } else if (status == ParseStatus::Machine) {
    handleMachine(msg_, now);
  } else if (status != ParseStatus::TooLong || (len > 0 && line[0] == '$')) {
    sendNak(nakReason(status));
  }
}

void SerialBoard::handleMachine(const Message& msg, uint32_t now) {
  switch (msg.verb()) {
    case Verb::Vend:
      handleVend(msg, now);
      return;
    case Verb::Query: {
      const char* id = msg.get("id");
      const Entry* entry = engine_.find(id);
      if (entry == nullptr) {
        sendState(id, "unseen", nullptr);
      } else {
        sendState(id, entryStateName(entry->state),
                  entry->state == EntryState::Failed ? entry->reason : nullptr);
      }
      return;
    }
    case Verb::Ping: {
      LineWriter w;
      w.begin("PONG");
      w.field("boot", identity_.boot);
      w.field("state", engine_.busy() ? "busy" : "ready");
      sendMachine(w);
      return;
    }
    case Verb::Hello:
      sendIdentity();
      return;
    case Verb::Nak:
      resend();
      return;
    default:
      return;  // a board-to-server verb (an echo?): nothing to do
  }
}

void SerialBoard::handleVend(const Message& msg, uint32_t now) {
  const char* id = msg.get("id");
  const Entry* entry = nullptr;
  VendEngine::Decision decision = engine_.requestVend(id, msg.getUint("slot"), now, &entry);
  LineWriter ack;
  ack.begin("ACK");
  ack.field("id", id);
  sendMachine(ack);
  if (decision == VendEngine::Decision::Start) {
    engine_.startMotor(now);
    return;
  }
  if (entry->state == EntryState::Success || entry->state == EntryState::Failed) {
    sendDone(id, *entry);
  } else if (entry->state == EntryState::Interrupted) {
    sendState(id, "interrupted", nullptr);
  }
  // Running: the DONE follows when the motor stops.
}

void SerialBoard::vendFinished(const char* id, uint16_t slot, bool success, const char* reason) {
  char n[12];
  utoa10(slot, n);
  if (id == nullptr) {  // typed by hand: no id, nothing to remember
    if (success) {
      humanf2("VEND_SUCCESS:", n);
    } else {
      humanf2("ERROR: VEND_FAILED:", n, " ", reason);
    }
    human(kSeparator);
    return;
  }
  const Entry* entry = engine_.find(id);
  if (entry != nullptr) sendDone(id, *entry);
}

void SerialBoard::sendDone(const char* id, const Entry& entry) {
  LineWriter w;
  w.begin("DONE");
  w.field("id", id);
  if (entry.state == EntryState::Success) {
    w.field("result", "success");
  } else {
    w.field("result", "failed");
    // A reason is mandatory with failed; an unreadable stored one still gets a word.
    w.field("reason", entry.reason[0] ? entry.reason : "motor_fault");
  }
  sendMachine(w);
}

void SerialBoard::sendState(const char* id, const char* state, const char* reason) {
  LineWriter w;
  w.begin("STATE");
  w.field("id", id);
  w.field("state", state);
  if (reason != nullptr) w.field("reason", reason[0] ? reason : "motor_fault");
  sendMachine(w);
}

void SerialBoard::sendIdentity() {
  LineWriter w;
  w.begin("ID");
  w.field("dev", identity_.dev);
  w.field("fw", identity_.fw);
  w.field("proto", kProtocolVersion);
  w.field("slots", engine_.slots());
  w.field("boot", identity_.boot);
  sendMachine(w);
}

void SerialBoard::sendMachine(LineWriter& writer) {
  if (!writer.finish()) return;
  memcpy(last_, writer.data(), writer.size());
  lastLen_ = writer.size();
  resends_ = 0;
  out_.write(last_, lastLen_);
}

void SerialBoard::sendNak(const char* reason) {
  // A NAK is never remembered as the last line: re-sending it would ping-pong.
  LineWriter w;
  w.begin("NAK");
  w.field("reason", reason);
  if (w.finish()) out_.write(w.data(), w.size());
}

void SerialBoard::resend() {
  if (lastLen_ == 0 || resends_ >= maxResends_) return;
  ++resends_;
  out_.write(last_, lastLen_);
}

void SerialBoard::human(const char* text) {
  char line[200];
  size_t n = strlen(text);
  if (n > sizeof(line) - 2) n = sizeof(line) - 2;
  memcpy(line, text, n);
  line[n++] = '\n';
  out_.write(line, n);
}

void SerialBoard::humanf2(const char* a, const char* b, const char* c, const char* d) {
  char line[200];
  line[0] = '\0';
  const char* parts[] = {a, b, c, d};
  for (const char* part : parts) strncat(line, part, sizeof(line) - strlen(line) - 1);
  human(line);
}

void SerialBoard::handleHuman(const uint8_t* line, size_t len, uint32_t now) {
  // Commands are ASCII; trim and upper-case like the reference model's strip().upper().
  size_t start = 0;
  while (start < len && isSpace(line[start])) ++start;
  while (len > start && isSpace(line[len - 1])) --len;
  if (start == len) return;
  char command[kMaxLine + 1];
  size_t n = len - start;
  for (size_t i = 0; i < n; ++i) {
    char c = static_cast<char>(line[start + i]);
    command[i] = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  }
  command[n] = '\0';
  char slots[12];
  utoa10(engine_.slots(), slots);
  if (strcmp(command, "HELP") == 0) {
    human("Commands: HELP, IDENTIFY, STATUS, VEND:<slot>");
    humanf2("Slots 1..", slots, ". Lines starting with $ are the machine protocol v2.");
  } else if (strcmp(command, "IDENTIFY") == 0 || strcmp(command, "DISCOVER") == 0) {
    humanf2("DEVICE_ID:", identity_.dev);
    humanf2("FIRMWARE_VERSION:", identity_.fw);
    humanf2("SLOTS_AVAILABLE:", slots);
    human("PROTOCOL:2");
    humanf2("BOOT_ID:", identity_.boot);
  } else if (strcmp(command, "STATUS") == 0 || strcmp(command, "PING") == 0) {
    if (engine_.busy()) {
      char slot[12];
      utoa10(engine_.runningSlot(), slot);
      humanf2("STATUS:BUSY slot=", slot);
    } else {
      human("STATUS:READY");
    }
  } else if (strncmp(command, "VEND:", 5) == 0) {
    humanVend(command + 5, now);
    return;  // it prints its own separator (now, or when the motor stops)
  } else {
    human("ERROR: Unknown command (type HELP)");
  }
  human(kSeparator);
}

void SerialBoard::humanVend(const char* arg, uint32_t now) {
  while (*arg && isSpace(static_cast<uint8_t>(*arg))) ++arg;
  unsigned long slot = 0;
  bool digits = *arg != '\0';
  for (const char* p = arg; *p; ++p) {
    if (*p < '0' || *p > '9') {
      digits = false;
      break;
    }
    if (slot <= 65535UL) slot = slot * 10 + static_cast<unsigned long>(*p - '0');
  }
  char slots[12];
  utoa10(engine_.slots(), slots);
  Refusal refusal = Refusal::InvalidSlot;
  if (digits && slot >= 1 && slot <= engine_.slots()) {
    refusal = engine_.startHumanVend(static_cast<uint16_t>(slot), now);
  }
  if (refusal == Refusal::None) {
    char n[12];
    utoa10(static_cast<unsigned>(slot), n);
    humanf2("VENDING:", n);
    return;
  }
  if (refusal == Refusal::InvalidSlot) {
    humanf2("ERROR: invalid slot (1..", slots, ")");
  } else if (refusal == Refusal::NotReady) {
    human("ERROR: not ready");
  } else {
    human("ERROR: busy");
  }
  human(kSeparator);
}

}  // namespace vending
