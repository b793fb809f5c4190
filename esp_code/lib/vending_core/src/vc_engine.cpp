#include "vc_engine.h"

#include <string.h>

namespace vending {

const char* refusalReason(Refusal refusal) {
  switch (refusal) {
    case Refusal::NotReady: return "not_ready";
    case Refusal::InvalidSlot: return "invalid_slot";
    case Refusal::Busy: return "busy";
    case Refusal::None: return "";
  }
  return "";
}

VendEngine::VendEngine(const EngineConfig& config, Motor& motor, Sensor* sensor, Storage& storage)
    : config_(config),
      motor_(motor),
      sensor_(config.useSensor ? sensor : nullptr),
      storage_(storage),
      memory_(config.memorySize) {
  if (config_.slots > kMaxSlots) config_.slots = kMaxSlots;
}

void VendEngine::restore() {
  if (restored_) return;
  restored_ = true;
  size_t len = storage_.load(blob_, sizeof(blob_));
  interruptedPending_ = memory_.restore(blob_, len) > 0;
}

void VendEngine::begin() {
  motor_.allOff();
  restore();
  if (interruptedPending_) {
    interruptedPending_ = false;
    persist();
  }
}

const Entry* VendEngine::find(const char* id) {
  restore();
  return memory_.find(id);
}

bool VendEngine::persist() {
  size_t len = memory_.serialize(blob_, sizeof(blob_));
  storageFailed_ = len == 0 || !storage_.save(blob_, len);
  return !storageFailed_;
}

Refusal VendEngine::check(uint16_t slot) const {
  if (!ready_) return Refusal::NotReady;
  if (slot < 1 || slot > config_.slots) return Refusal::InvalidSlot;
  if (busy()) return Refusal::Busy;
  return Refusal::None;
}

VendEngine::Decision VendEngine::requestVend(const char* id, uint16_t slot, uint32_t now,
                                             const Entry** entry) {
  restore();
  const Entry* known = memory_.find(id);
  if (known != nullptr) {  // a repeat: never run the motor again
    *entry = known;
    return Decision::Repeat;
  }
  Refusal refusal = check(slot);
  if (refusal != Refusal::None) {
    *entry = &memory_.remember(id, slot, EntryState::Failed, refusalReason(refusal));
    persist();
    return Decision::Refused;
  }
  // Persist before ACK and motor: an ACKed id is always on record, so a reboot while the
  // motor turns finds it running and reports interrupted instead of unseen.
  Entry& running = memory_.remember(id, slot, EntryState::Running, "");
  if (!persist()) {
    // Without a record we could not tell the truth after a reboot: do not turn the motor.
    running.state = EntryState::Failed;
    strcpy(running.reason, "not_ready");
    *entry = &running;
    return Decision::Refused;
  }
  *entry = &running;
  runningSlot_ = slot;
  runningHasId_ = true;
  strcpy(runningId_, id);
  startedAt_ = now;
  pendingStart_ = true;
  return Decision::Start;
}

void VendEngine::startMotor(uint32_t now) {
  if (!pendingStart_) return;
  pendingStart_ = false;
  (void)now;  // the clock started when the vend was accepted, as in the reference model
  if (sensor_) sensor_->arm(runningSlot_);
  motor_.start(runningSlot_);
}

Refusal VendEngine::startHumanVend(uint16_t slot, uint32_t now) {
  if (slot < 1 || slot > config_.slots) return Refusal::InvalidSlot;
  if (!ready_) return Refusal::NotReady;
  if (busy()) return Refusal::Busy;
  runningSlot_ = slot;
  runningHasId_ = false;
  runningId_[0] = '\0';
  startedAt_ = now;
  pendingStart_ = true;
  startMotor(now);
  return Refusal::None;
}

uint32_t VendEngine::runMsOf(uint16_t slot) const {
  uint32_t ms = slot >= 1 && slot <= kMaxSlots ? config_.slotRunMs[slot - 1] : 0;
  return ms ? ms : config_.runMs;
}

void VendEngine::poll(uint32_t now) {
  if (runningSlot_ == 0 || pendingStart_) return;
  uint32_t elapsed = now - startedAt_;  // unsigned: survives millis() wrapping
  // The hard limit comes first: a slot configured to run longer is a fault, not a success.
  if (elapsed >= config_.maxRunMs) {
    finish(false, "motor_fault");
  } else if (sensor_) {
    if (sensor_->itemSeen()) {
      finish(true, "");
    } else if (elapsed >= config_.jamMs) {
      finish(false, "jam");
    }
  } else if (elapsed >= runMsOf(runningSlot_)) {
    finish(true, "");
  }
}

void VendEngine::finish(bool success, const char* reason) {
  uint16_t slot = runningSlot_;
  motor_.stop(slot);
  runningSlot_ = 0;
  if (!runningHasId_) {
    if (listener_) listener_->vendFinished(nullptr, slot, success, reason);
    return;
  }
  Entry* entry = memory_.find(runningId_);
  if (entry != nullptr) {
    entry->state = success ? EntryState::Success : EntryState::Failed;
    strncpy(entry->reason, success ? "" : reason, sizeof(entry->reason) - 1);
    entry->reason[sizeof(entry->reason) - 1] = '\0';
    persist();
  }
  runningHasId_ = false;
  if (listener_) listener_->vendFinished(runningId_, slot, success, reason);
}

}  // namespace vending
