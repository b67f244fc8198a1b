// Ground truth for the stand-in's JSON, base64 and number rules: the libraries TF Serving 2.20
// links (rapidjson 1.1.0, abseil), called with the flags and calls util/json_tensor.cc uses.
// Our own driver code; the test compiles it against Debian's rapidjson-dev and libabsl-dev.
//
// Usage: tf_serving_oracle MODE < records
//   json    records: u32 length + bytes (a request body). Prints per record
//           "E <offset> <GetParseError_En>" or "V <hex of the root's debug string>", where the debug
//           string is a PrettyWriter in kFormatSingleLineArray mode that stops at the first event
//           after 256 bytes (JsonValueToDebugString), and for an object root also
//           "K <hex of the first 'x' member's debug string>" when it has one (FindMember), and
//           "F <hex>" of the same member written without the limit.
//   b64     records as above: "OK <hex>" or "FAIL" for absl::Base64Unescape.
//   float   lines of 8 hex digits (float32 bits): WriteDecimal<float>'s text.
//   double  lines of 16 hex digits (float64 bits): absl::StrCat(double).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "rapidjson/document.h"
#include "rapidjson/encodedstream.h"
#include "rapidjson/error/en.h"
#include "rapidjson/memorystream.h"
#include "rapidjson/prettywriter.h"
#include "rapidjson/stringbuffer.h"

namespace {

using Writer = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

// Forwards Accept() events to the writer until the buffer holds `limit` bytes.
class Limited {
 public:
  Limited(rapidjson::StringBuffer* buffer, Writer* writer, size_t limit)
      : buffer_(buffer), writer_(writer), limit_(limit) {}
  bool Null() { return ok() && writer_->Null(); }
  bool Bool(bool b) { return ok() && writer_->Bool(b); }
  bool Int(int i) { return ok() && writer_->Int(i); }
  bool Uint(unsigned u) { return ok() && writer_->Uint(u); }
  bool Int64(int64_t i) { return ok() && writer_->Int64(i); }
  bool Uint64(uint64_t u) { return ok() && writer_->Uint64(u); }
  bool Double(double d) { return ok() && writer_->Double(d); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) { return ok() && writer_->RawNumber(s, n, copy); }
  bool String(const char* s, rapidjson::SizeType n, bool copy) { return ok() && writer_->String(s, n, copy); }
  bool StartObject() { return ok() && writer_->StartObject(); }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) { return ok() && writer_->Key(s, n, copy); }
  bool EndObject(rapidjson::SizeType n) { return ok() && writer_->EndObject(n); }
  bool StartArray() { return ok() && writer_->StartArray(); }
  bool EndArray(rapidjson::SizeType n) { return ok() && writer_->EndArray(n); }

 private:
  bool ok() const { return buffer_->GetSize() < limit_; }
  rapidjson::StringBuffer* buffer_;
  Writer* writer_;
  size_t limit_;
};

std::string Hex(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string Debug(const rapidjson::Value& value, size_t limit = 256) {
  rapidjson::StringBuffer buffer;
  Writer writer(buffer);
  writer.SetFormatOptions(rapidjson::kFormatSingleLineArray);
  Limited limited(&buffer, &writer, limit);
  value.Accept(limited);
  return std::string(buffer.GetString(), buffer.GetSize());
}

bool ReadRecord(std::string* out) {
  unsigned char len[4];
  if (!std::cin.read(reinterpret_cast<char*>(len), 4)) return false;
  const size_t n = len[0] | (len[1] << 8) | (len[2] << 16) | (static_cast<size_t>(len[3]) << 24);
  out->assign(n, '\0');
  return n == 0 || static_cast<bool>(std::cin.read(&(*out)[0], n));
}

void Json(const std::string& body) {
  rapidjson::Document doc;
  rapidjson::MemoryStream ms(body.data(), body.size());
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> stream(ms);
  constexpr auto flags =
      rapidjson::kParseIterativeFlag | rapidjson::kParseNanAndInfFlag | rapidjson::kParseStopWhenDoneFlag;
  if (doc.ParseStream<flags>(stream).HasParseError()) {
    std::cout << "E " << doc.GetErrorOffset() << " " << rapidjson::GetParseError_En(doc.GetParseError()) << "\n";
    return;
  }
  std::cout << "V " << Hex(Debug(doc)) << "\n";
  if (doc.IsObject()) {
    auto it = doc.FindMember("x");
    if (it != doc.MemberEnd()) {
      std::cout << "K " << Hex(Debug(it->value)) << "\n";
      std::cout << "F " << Hex(Debug(it->value, static_cast<size_t>(-1))) << "\n";
    }
  }
}

std::string WriteDecimal(float val) {  // the steps of json_tensor.cc's WriteDecimal<float>
  std::string text;
  if (std::isfinite(val)) {
    text = absl::StrCat(val);
    float back;
    if (!absl::SimpleAtof(text, &back)) return "PARSE-FAILED";
    if (val != back) text = absl::StrFormat("%.*g", std::numeric_limits<float>::max_digits10, val);
    if (!absl::StrContains(text, '.') && !absl::StrContains(text, 'e')) absl::StrAppend(&text, ".0");
  } else if (std::isnan(val)) {
    text = "NaN";
  } else {
    text = std::signbit(val) ? "-Infinity" : "Infinity";
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  std::string record;
  if (mode == "json") {
    while (ReadRecord(&record)) Json(record);
  } else if (mode == "b64") {
    while (ReadRecord(&record)) {
      std::string out;
      if (absl::Base64Unescape(record, &out)) {
        std::cout << "OK " << Hex(out) << "\n";
      } else {
        std::cout << "FAIL\n";
      }
    }
  } else if (mode == "float" || mode == "double") {
    std::string line;
    while (std::getline(std::cin, line)) {
      const uint64_t bits = std::stoull(line, nullptr, 16);
      if (mode == "float") {
        uint32_t b32 = static_cast<uint32_t>(bits);
        float f;
        std::memcpy(&f, &b32, 4);
        std::cout << WriteDecimal(f) << "\n";
      } else {
        double d;
        std::memcpy(&d, &bits, 8);
        std::cout << absl::StrCat(d) << "\n";
      }
    }
  } else {
    std::cerr << "usage: tf_serving_oracle json|b64|float|double\n";
    return 2;
  }
  return 0;
}
