#include "vc_json.h"

#include <stdio.h>
#include <string.h>

namespace vending {

namespace {

struct Cursor {
  const char* s;
  size_t n;
  size_t i;
  void ws() {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
  }
  bool lit(const char* word) {
    size_t k = strlen(word);
    if (i + k > n || memcmp(s + i, word, k) != 0) return false;
    i += k;
    return true;
  }
};

bool isHexChar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Skips a string starting at its quote; copies it unescaped into out when out != nullptr.
bool skipString(Cursor& c, char* out, size_t cap) {
  if (c.i >= c.n || c.s[c.i] != '"') return false;
  ++c.i;
  size_t at = 0;
  while (c.i < c.n) {
    char ch = c.s[c.i++];
    if (ch == '"') {
      if (out != nullptr) {
        if (at >= cap) return false;
        out[at] = '\0';
      }
      return true;
    }
    if (static_cast<unsigned char>(ch) < 0x20) return false;
    if (ch == '\\') {
      if (c.i >= c.n) return false;
      char e = c.s[c.i++];
      switch (e) {
        case '"': case '\\': case '/': ch = e; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': {
          if (c.i + 4 > c.n) return false;
          unsigned v = 0;
          for (int k = 0; k < 4; ++k) {
            char h = c.s[c.i++];
            if (!isHexChar(h)) return false;
            v = v * 16 + static_cast<unsigned>(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
          }
          // Nothing we read needs more than ASCII; refuse rather than mangle.
          if (out != nullptr && v > 0x7F) return false;
          ch = static_cast<char>(v & 0x7F);
          break;
        }
        default: return false;
      }
    }
    if (out != nullptr) {
      if (at + 1 >= cap) return false;
      out[at++] = ch;
    }
  }
  return false;
}

bool skipNumber(Cursor& c) {
  size_t start = c.i;
  if (c.i < c.n && c.s[c.i] == '-') ++c.i;
  size_t digits = c.i;
  while (c.i < c.n && c.s[c.i] >= '0' && c.s[c.i] <= '9') ++c.i;
  if (c.i == digits) return false;
  if (c.i < c.n && c.s[c.i] == '.') {
    size_t frac = ++c.i;
    while (c.i < c.n && c.s[c.i] >= '0' && c.s[c.i] <= '9') ++c.i;
    if (c.i == frac) return false;
  }
  if (c.i < c.n && (c.s[c.i] == 'e' || c.s[c.i] == 'E')) {
    ++c.i;
    if (c.i < c.n && (c.s[c.i] == '+' || c.s[c.i] == '-')) ++c.i;
    size_t exp = c.i;
    while (c.i < c.n && c.s[c.i] >= '0' && c.s[c.i] <= '9') ++c.i;
    if (c.i == exp) return false;
  }
  return c.i > start;
}

bool skipValue(Cursor& c, int depth) {
  if (depth > 4) return false;
  c.ws();
  if (c.i >= c.n) return false;
  char ch = c.s[c.i];
  if (ch == '"') return skipString(c, nullptr, 0);
  if (ch == '{' || ch == '[') {
    char close = ch == '{' ? '}' : ']';
    ++c.i;
    c.ws();
    if (c.i < c.n && c.s[c.i] == close) {
      ++c.i;
      return true;
    }
    while (true) {
      if (ch == '{') {
        c.ws();
        if (!skipString(c, nullptr, 0)) return false;
        c.ws();
        if (c.i >= c.n || c.s[c.i++] != ':') return false;
      }
      if (!skipValue(c, depth + 1)) return false;
      c.ws();
      if (c.i >= c.n) return false;
      char sep = c.s[c.i++];
      if (sep == close) return true;
      if (sep != ',') return false;
    }
  }
  if (c.lit("true") || c.lit("false") || c.lit("null")) return true;
  return skipNumber(c);
}

}  // namespace

bool JsonObject::parse(const char* text, size_t len) {
  text_ = text;
  len_ = len;
  count_ = 0;
  Cursor c = {text, len, 0};
  c.ws();
  if (c.i >= c.n || c.s[c.i] != '{') return false;
  ++c.i;
  c.ws();
  if (c.i < c.n && c.s[c.i] == '}') {
    ++c.i;
  } else {
    while (true) {
      c.ws();
      size_t keyAt = c.i;
      if (!skipString(c, nullptr, 0)) return false;
      c.ws();
      if (c.i >= c.n || c.s[c.i++] != ':') return false;
      c.ws();
      size_t valueAt = c.i;
      if (!skipValue(c, 1)) return false;
      if (count_ < kMaxMembers) {
        keyAt_[count_] = keyAt;
        valueAt_[count_] = valueAt;
        ++count_;
      }
      c.ws();
      if (c.i >= c.n) return false;
      char sep = c.s[c.i++];
      if (sep == '}') break;
      if (sep != ',') return false;
    }
  }
  c.ws();
  if (c.i != c.n) {
    count_ = 0;
    return false;
  }
  return true;
}

const char* JsonObject::find(const char* key) const {
  char name[32];
  for (size_t k = 0; k < count_; ++k) {
    Cursor c = {text_, len_, keyAt_[k]};
    if (skipString(c, name, sizeof(name)) && strcmp(name, key) == 0) return text_ + valueAt_[k];
  }
  return nullptr;
}

JsonObject::Type JsonObject::type(const char* key) const {
  const char* v = find(key);
  if (v == nullptr) return Type::Missing;
  switch (*v) {
    case '"': return Type::String;
    case '{': return Type::Object;
    case '[': return Type::Array;
    case 'n': return Type::Null;
    case 't': case 'f': return Type::Bool;
    default: return Type::Number;
  }
}

bool JsonObject::getString(const char* key, char* out, size_t cap) const {
  const char* v = find(key);
  if (v == nullptr || *v != '"') return false;
  Cursor c = {text_, len_, static_cast<size_t>(v - text_)};
  return skipString(c, out, cap);
}

bool JsonObject::getInt(const char* key, int32_t* out) const {
  const char* v = find(key);
  if (v == nullptr || !(*v == '-' || (*v >= '0' && *v <= '9'))) return false;
  bool negative = *v == '-';
  if (negative) ++v;
  int64_t value = 0;
  for (; *v >= '0' && *v <= '9'; ++v) {
    value = value * 10 + (*v - '0');
    if (value > 0x7FFFFFFF) return false;
  }
  *out = static_cast<int32_t>(negative ? -value : value);
  return true;
}

bool JsonObject::getArrayString(const char* key, size_t index, char* out, size_t cap) const {
  const char* v = find(key);
  if (v == nullptr || *v != '[') return false;
  Cursor c = {text_, len_, static_cast<size_t>(v - text_) + 1};
  for (size_t k = 0;; ++k) {
    c.ws();
    if (c.i >= c.n || c.s[c.i] != '"') return false;
    if (k == index) return skipString(c, out, cap);
    if (!skipString(c, nullptr, 0)) return false;
    c.ws();
    if (c.i >= c.n || c.s[c.i++] != ',') return false;
  }
}

JsonWriter::JsonWriter(char* out, size_t cap) : out_(out), cap_(cap) {
  raw("{");
}

void JsonWriter::raw(const char* text) {
  size_t n = strlen(text);
  if (!ok_ || len_ + n + 1 > cap_) {
    ok_ = false;
    return;
  }
  memcpy(out_ + len_, text, n);
  len_ += n;
  out_[len_] = '\0';
}

void JsonWriter::key(const char* name) {
  raw(first_ ? "\"" : ", \"");
  first_ = false;
  raw(name);
  raw("\": ");
}

void JsonWriter::string(const char* name, const char* value) {
  key(name);
  raw("\"");
  char one[7];
  for (const char* p = value; *p; ++p) {
    unsigned char ch = static_cast<unsigned char>(*p);
    if (ch == '"' || ch == '\\') {
      one[0] = '\\';
      one[1] = static_cast<char>(ch);
      one[2] = '\0';
    } else if (ch < 0x20 || ch >= 0x7F) {
      snprintf(one, sizeof(one), "\\u%04x", ch);
    } else {
      one[0] = static_cast<char>(ch);
      one[1] = '\0';
    }
    raw(one);
  }
  raw("\"");
}

void JsonWriter::number(const char* name, int32_t value) {
  key(name);
  char text[12];
  snprintf(text, sizeof(text), "%ld", static_cast<long>(value));
  raw(text);
}

const char* JsonWriter::finish() {
  raw("}");
  return ok_ ? out_ : nullptr;
}

}  // namespace vending
