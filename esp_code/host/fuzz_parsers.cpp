// libFuzzer target for what the board reads from the outside: the JSON reader (HTTP answers)
// and the protocol v2 line codec and framer (serial bytes). Built by `make fuzz` with clang
// (-fsanitize=fuzzer,address,undefined); tests/test_firmware_fuzz.py runs it briefly,
// bench/fuzz_firmware.py for longer.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vc_codec.h"
#include "vc_json.h"

using namespace vending;

namespace {

void require(bool ok) {
  if (!ok) __builtin_trap();  // a broken property: libFuzzer saves the input
}

void fuzzJson(const uint8_t* data, size_t size) {
  // An exact-size heap copy, so AddressSanitizer sees any read past the text.
  char* text = static_cast<char*>(malloc(size ? size : 1));
  memcpy(text, data, size);
  JsonObject json;
  if (json.parse(text, size)) {
    char out[64];
    int32_t number = 0;
    static const char* kKeys[] = {"command", "id", "slot", "reconcile", "retry_ms", "error", ""};
    for (const char* key : kKeys) {
      json.type(key);
      json.getString(key, out, sizeof(out));
      json.getInt(key, &number);
      for (size_t i = 0; json.getArrayString(key, i, out, sizeof(out)) && i < 64; ++i) {
      }
    }
    require(json.getString("id", out, 1) == false || out[0] == '\0');
  }
  free(text);
}

void fuzzCodec(const uint8_t* data, size_t size) {
  uint8_t* line = static_cast<uint8_t*>(malloc(size ? size : 1));
  memcpy(line, data, size);
  Message msg;
  if (parseLine(line, size, msg) == ParseStatus::Machine) {
    // What the board accepts, it can write canonically, and that canonical line means the same.
    char canonical[kMaxLine + 8];
    size_t n = formatCanonical(msg, canonical, sizeof(canonical));
    require(n > 0);
    Message again;
    require(parseLine(reinterpret_cast<const uint8_t*>(canonical), n, again) == ParseStatus::Machine);
    require(again.verb() == msg.verb() && again.fieldCount() == msg.fieldCount());
    char twice[kMaxLine + 8];
    require(formatCanonical(again, twice, sizeof(twice)) == n && memcmp(twice, canonical, n) == 0);
  }
  free(line);

  LineFramer framer;
  for (size_t i = 0; i < size; ++i) {
    if (framer.push(data[i]) == LineFramer::Line) require(framer.length() <= kMaxLine);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzzJson(data, size);
  fuzzCodec(data, size);
  return 0;
}
