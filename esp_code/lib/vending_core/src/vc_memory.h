// The exactly-once memory: the last request ids with their slot and state, oldest first.
#ifndef VC_MEMORY_H
#define VC_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "vc_codec.h"

namespace vending {

enum class EntryState : uint8_t { Running, Success, Failed, Interrupted };

const char* entryStateName(EntryState state);

struct Entry {
  char id[kMaxIdLen + 1];
  uint16_t slot;
  EntryState state;
  char reason[24];  // set only for Failed
};

const size_t kMemorySize = 16;     // the serial board's memory (docs/protocol.md)
const size_t kMaxMemorySize = 32;  // the WiFi board's journal (docs/protocol-wifi.md)
// Worst case of serialize(): a header plus one full line per entry.
const size_t kMemoryBlobSize = 16 + (kMaxMemorySize + 1) * 64;

class OutcomeMemory {
 public:
  explicit OutcomeMemory(size_t capacity = kMemorySize);
  Entry* find(const char* id);
  const Entry* find(const char* id) const;
  // Appends id (which must be new) and forgets the oldest finished entries beyond capacity.
  Entry& remember(const char* id, uint16_t slot, EntryState state, const char* reason);
  size_t size() const { return count_; }
  const Entry& at(size_t i) const { return entries_[i]; }
  void clear() { count_ = 0; }

  // A small text blob for NVS or a file: "VMEM 1\n" then "id slot state reason|-\n" lines.
  size_t serialize(char* out, size_t cap) const;
  // Restores a blob; every Running entry becomes Interrupted. Returns how many entries
  // were Running (their new state must be written back before acting on commands).
  // Lines it cannot read are skipped; a blob with a foreign header restores nothing.
  size_t restore(const char* blob, size_t len);

 private:
  void trim();
  size_t capacity_;
  size_t count_ = 0;
  // One spare place: the running entry is never forgotten, even when the memory is full.
  Entry entries_[kMaxMemorySize + 1];
};

}  // namespace vending

#endif
