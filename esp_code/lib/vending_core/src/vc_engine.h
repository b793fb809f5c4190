// The vend engine: exactly-once bookkeeping plus the motor state machine, transport-neutral.
// The serial board (vc_serial_board.h) and the WiFi shell both drive it.
#ifndef VC_ENGINE_H
#define VC_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "vc_memory.h"

namespace vending {

const uint16_t kMaxSlots = 32;

// Motor outputs of the board. The shell maps slots to pins.
class Motor {
 public:
  virtual ~Motor() {}
  virtual void allOff() = 0;
  virtual void start(uint16_t slot) = 0;
  virtual void stop(uint16_t slot) = 0;
};

// The optional dispense sensor (an IR beam under the slots).
class Sensor {
 public:
  virtual ~Sensor() {}
  // Called when a motor starts: forget any earlier detection.
  virtual void arm(uint16_t slot) = 0;
  // True once an item has fallen through the beam since arm().
  virtual bool itemSeen() = 0;
};

// Persistent storage for the outcome memory (NVS on the ESP32, a file on the host).
class Storage {
 public:
  virtual ~Storage() {}
  // Copies the stored blob into buf; returns its length (0 when there is none).
  virtual size_t load(char* buf, size_t cap) = 0;
  // Writes the blob durably; returns false when it could not.
  virtual bool save(const char* data, size_t len) = 0;
};

struct EngineConfig {
  uint16_t slots = 5;
  uint32_t runMs = 1200;                // default motor time per slot (no sensor)
  uint32_t slotRunMs[kMaxSlots] = {0};  // per slot (index slot-1); 0 means runMs
  bool useSensor = false;               // success only when the sensor sees an item
  uint32_t jamMs = 4000;                // with a sensor: no item by then -> failed jam
  uint32_t maxRunMs = 15000;            // hard cut whatever else says: failed motor_fault
  size_t memorySize = kMemorySize;
};

// Why a vend was refused; None when it was accepted.
enum class Refusal : uint8_t { None, NotReady, InvalidSlot, Busy };
const char* refusalReason(Refusal refusal);

class EngineListener {
 public:
  virtual ~EngineListener() {}
  // A motor stopped. id is nullptr for a vend typed by hand. reason is "" on success.
  virtual void vendFinished(const char* id, uint16_t slot, bool success, const char* reason) = 0;
};

class VendEngine {
 public:
  VendEngine(const EngineConfig& config, Motor& motor, Sensor* sensor, Storage& storage);
  void setListener(EngineListener* listener) { listener_ = listener; }

  // At boot: every motor off, the memory restored from storage (if not already), and a
  // vend that was running when power went, now interrupted, written back.
  void begin();
  // Commands are refused with not_ready until the shell says the board is ready.
  void setReady(bool ready) { ready_ = ready; }
  bool ready() const { return ready_; }

  enum class Decision : uint8_t { Start, Repeat, Refused };
  // A VEND with request id: remembers and persists it before anything else. On Start the
  // caller acknowledges, then calls startMotor(); on Repeat/Refused *entry says what to answer.
  Decision requestVend(const char* id, uint16_t slot, uint32_t now, const Entry** entry);
  void startMotor(uint32_t now);
  // A vend typed by hand: no id, not remembered, but the board is busy while it runs.
  Refusal startHumanVend(uint16_t slot, uint32_t now);

  // Advance the motor state machine; reports a finished vend to the listener.
  void poll(uint32_t now);

  bool busy() const { return runningSlot_ != 0; }
  uint16_t runningSlot() const { return runningSlot_; }
  // The request id of the vend now running ("" for a vend typed by hand or none).
  const char* runningId() const { return runningId_; }
  const Entry* find(const char* id);
  const OutcomeMemory& memory() const { return memory_; }
  uint16_t slots() const { return config_.slots; }
  // True when the last write to storage failed (the shell shows it on the LED).
  bool storageFailed() const { return storageFailed_; }

 private:
  // The memory is read from storage on first use, so a command that arrives before begin()
  // (refused as not_ready) cannot overwrite what flash remembers.
  void restore();
  Refusal check(uint16_t slot) const;
  bool persist();
  void finish(bool success, const char* reason);
  uint32_t runMsOf(uint16_t slot) const;

  EngineConfig config_;
  Motor& motor_;
  Sensor* sensor_;
  Storage& storage_;
  EngineListener* listener_ = nullptr;
  OutcomeMemory memory_;
  // The memory as text, for storage: one buffer for loading and saving (never both at once).
  char blob_[kMemoryBlobSize];
  bool ready_ = false;
  bool restored_ = false;
  bool interruptedPending_ = false;
  bool storageFailed_ = false;
  uint16_t runningSlot_ = 0;  // 0: no motor turning (slots count from 1)
  bool runningHasId_ = false;
  bool pendingStart_ = false;
  char runningId_[kMaxIdLen + 1] = {0};
  uint32_t startedAt_ = 0;
};

}  // namespace vending

#endif
