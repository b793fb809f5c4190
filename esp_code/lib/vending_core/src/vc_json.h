// Just enough JSON for the server's answers (docs/protocol-wifi.md): one flat object whose
// members are strings, numbers, true/false/null or arrays of strings; and a writer for the
// bodies the board sends. The whole text is validated before anything is read from it.
#ifndef VC_JSON_H
#define VC_JSON_H

#include <stddef.h>
#include <stdint.h>

namespace vending {

class JsonObject {
 public:
  enum class Type : uint8_t { Missing, Null, Bool, Number, String, Array, Object };

  // False when text is not one well-formed JSON object (nesting deeper than 4 is refused).
  bool parse(const char* text, size_t len);
  Type type(const char* key) const;
  // The string member, unescaped into out (\u escapes above 0x7F refused); false when
  // missing, not a string, or longer than cap - 1.
  bool getString(const char* key, char* out, size_t cap) const;
  // An integer member (a fraction is cut: 25.0 -> 25); false when missing or not a number.
  bool getInt(const char* key, int32_t* out) const;
  // Item `index` of an array-of-strings member; false past its end or on a non-string.
  bool getArrayString(const char* key, size_t index, char* out, size_t cap) const;

 private:
  static const size_t kMaxMembers = 16;
  const char* text_ = nullptr;
  size_t len_ = 0;
  size_t count_ = 0;
  size_t keyAt_[kMaxMembers] = {0};    // offset of the key's opening quote
  size_t valueAt_[kMaxMembers] = {0};  // offset of the value's first character
  const char* find(const char* key) const;
};

// Builds {"k": v, ...} into a caller's buffer; ok() false once anything did not fit.
class JsonWriter {
 public:
  JsonWriter(char* out, size_t cap);
  void string(const char* key, const char* value);
  void number(const char* key, int32_t value);
  const char* finish();  // nullptr when it overflowed
  size_t size() const { return len_; }
  bool ok() const { return ok_; }

 private:
  void raw(const char* text);
  void key(const char* key);
  char* out_;
  size_t cap_;
  size_t len_ = 0;
  bool ok_ = true;
  bool first_ = true;
};

}  // namespace vending

#endif
