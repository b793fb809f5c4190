#include "vc_memory.h"

#include <string.h>

namespace vending {

namespace {

void copyText(char* dst, size_t cap, const char* src) {
  size_t n = strlen(src);
  if (n >= cap) n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

bool parseState(const char* text, EntryState& out) {
  static const EntryState kAll[] = {EntryState::Running, EntryState::Success, EntryState::Failed,
                                    EntryState::Interrupted};
  for (EntryState state : kAll) {
    if (strcmp(text, entryStateName(state)) == 0) {
      out = state;
      return true;
    }
  }
  return false;
}

}  // namespace

const char* entryStateName(EntryState state) {
  switch (state) {
    case EntryState::Running: return "running";
    case EntryState::Success: return "success";
    case EntryState::Failed: return "failed";
    case EntryState::Interrupted: return "interrupted";
  }
  return "";
}

OutcomeMemory::OutcomeMemory(size_t capacity)
    : capacity_(capacity == 0 || capacity > kMaxMemorySize ? kMemorySize : capacity) {}

Entry* OutcomeMemory::find(const char* id) {
  for (size_t i = 0; i < count_; ++i) {
    if (strcmp(entries_[i].id, id) == 0) return &entries_[i];
  }
  return nullptr;
}

const Entry* OutcomeMemory::find(const char* id) const {
  return const_cast<OutcomeMemory*>(this)->find(id);
}

Entry& OutcomeMemory::remember(const char* id, uint16_t slot, EntryState state, const char* reason) {
  if (count_ == kMaxMemorySize + 1) {
    // Only reachable if every entry were running, which one motor at a time rules out.
    memmove(&entries_[0], &entries_[1], sizeof(Entry) * (count_ - 1));
    --count_;
  }
  Entry& entry = entries_[count_++];
  copyText(entry.id, sizeof(entry.id), id);
  entry.slot = slot;
  entry.state = state;
  copyText(entry.reason, sizeof(entry.reason), reason ? reason : "");
  trim();
  return *find(id);
}

void OutcomeMemory::trim() {
  // Forget the oldest ids first, but never the one whose motor is turning.
  while (count_ > capacity_) {
    size_t victim = count_;
    for (size_t i = 0; i < count_; ++i) {
      if (entries_[i].state != EntryState::Running) {
        victim = i;
        break;
      }
    }
    if (victim == count_) return;
    memmove(&entries_[victim], &entries_[victim + 1], sizeof(Entry) * (count_ - victim - 1));
    --count_;
  }
}

size_t OutcomeMemory::serialize(char* out, size_t cap) const {
  size_t len = 0;
  char line[96];
  const char* header = "VMEM 1\n";
  size_t n = strlen(header);
  if (n >= cap) return 0;
  memcpy(out, header, n);
  len = n;
  for (size_t i = 0; i < count_; ++i) {
    const Entry& e = entries_[i];
    char slot[8];
    size_t s = 0;
    unsigned v = e.slot;
    char rev[8];
    do {
      rev[s++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v);
    for (size_t k = 0; k < s; ++k) slot[k] = rev[s - 1 - k];
    slot[s] = '\0';
    line[0] = '\0';
    const char* parts[] = {e.id, " ", slot, " ", entryStateName(e.state), " ",
                           e.reason[0] ? e.reason : "-", "\n"};
    size_t ln = 0;
    for (const char* part : parts) {
      size_t pn = strlen(part);
      memcpy(line + ln, part, pn);
      ln += pn;
    }
    if (len + ln >= cap) return 0;
    memcpy(out + len, line, ln);
    len += ln;
  }
  out[len] = '\0';
  return len;
}

size_t OutcomeMemory::restore(const char* blob, size_t len) {
  count_ = 0;
  const char* header = "VMEM 1\n";
  size_t hn = strlen(header);
  if (len < hn || memcmp(blob, header, hn) != 0) return 0;
  size_t interrupted = 0;
  size_t pos = hn;
  while (pos < len) {
    size_t end = pos;
    while (end < len && blob[end] != '\n') ++end;
    char line[96];
    size_t ln = end - pos;
    if (ln < sizeof(line)) {
      memcpy(line, blob + pos, ln);
      line[ln] = '\0';
      char* fields[4] = {nullptr, nullptr, nullptr, nullptr};
      size_t nf = 0;
      char* cursor = line;
      while (cursor && nf < 4) {
        fields[nf++] = cursor;
        char* space = strchr(cursor, ' ');
        if (space) *space = '\0';
        cursor = space ? space + 1 : nullptr;
      }
      EntryState state = EntryState::Failed;  // set by parseState whenever ok
      unsigned long slot = 0;
      bool ok = nf == 4 && cursor == nullptr && isRequestId(fields[0]) && parseState(fields[2], state);
      for (const char* p = ok ? fields[1] : ""; *p; ++p) {
        if (*p < '0' || *p > '9' || slot > 65535UL) ok = false;
        slot = slot * 10 + static_cast<unsigned long>(*p - '0');
      }
      // A reason is written back on the wire, so it must still be a valid token.
      ok = ok && fields[1][0] != '\0' && slot <= 65535UL && find(fields[0]) == nullptr &&
           isValueToken(fields[3]) && strlen(fields[3]) < sizeof(Entry::reason);
      if (ok) {
        bool hasReason = strcmp(fields[3], "-") != 0;
        if (state == EntryState::Running) {
          // Cut by the reboot: nobody knows whether the item fell, so never re-run it.
          state = EntryState::Interrupted;
          ++interrupted;
        }
        remember(fields[0], static_cast<uint16_t>(slot), state,
                 state == EntryState::Failed && hasReason ? fields[3] : "");
      }
    }
    pos = end + 1;
  }
  return interrupted;
}

}  // namespace vending
