// What both host boards need from POSIX: a stop flag for signals, a millisecond clock and
// a write that copes with EINTR. Host-only; the sketches never include it.
#pragma once

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

namespace host {

// One translation unit per host board, so a static flag is the program's only one.
static volatile sig_atomic_t g_stop = 0;
inline void onSignal(int) { g_stop = 1; }

inline uint32_t monotonicMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint32_t>(static_cast<uint64_t>(ts.tv_sec) * 1000u +
                               static_cast<uint64_t>(ts.tv_nsec) / 1000000u);
}

// False when the peer went away (or, on a full pty nobody reads, the bytes are dropped,
// like a UART with no listener).
inline bool writeAll(int fd, const char* data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace host
