#include "gguf_check.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"
#include "file_io.h"
#include "ggml.h"

namespace hovle {
namespace {

// The JS reader's limits: far above any real model, low enough to bound the work done here.
constexpr uint64_t kMaxTensors = 1u << 20;
constexpr uint64_t kMaxKv = 1u << 20;
constexpr uint64_t kMaxString = 1u << 26;
constexpr uint64_t kMaxArray = 1u << 28;
constexpr uint64_t kMaxDim = (uint64_t{1} << 53) - 1;

// GGUF value types (gguf.h), and the byte size of the fixed-size ones.
enum : uint32_t { kU8, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64, kTypeCount };
constexpr uint32_t kScalarSize[kTypeCount] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

class Reader {
 public:
  Reader(FILE* f, uint64_t size, const std::string& path) : f_(f), size_(size), path_(path) {}

  [[noreturn]] void Fail(const std::string& msg) const {
    throw Error("GGUF_INVALID", path_ + ": " + msg + " (at byte " + std::to_string(pos_) + ")");
  }
  uint64_t left() const { return size_ - pos_; }
  uint64_t pos() const { return pos_; }

  void Bytes(void* dst, uint64_t n) {
    if (n > left()) Fail("file ends early: needs " + std::to_string(n) + " more bytes, " + std::to_string(left()) + " left");
    if (n > 0 && std::fread(dst, 1, n, f_) != n) throw Error("IO_ERROR", path_ + ": cannot read");
    pos_ += n;
  }
  void Skip(uint64_t n) {
    if (n > left()) Fail("file ends early: needs " + std::to_string(n) + " more bytes, " + std::to_string(left()) + " left");
    if (n > 0 && fseeko(f_, static_cast<off_t>(pos_ + n), SEEK_SET) != 0) throw Error("IO_ERROR", path_ + ": cannot seek");
    pos_ += n;
  }
  uint32_t U32() {
    uint32_t v;
    Bytes(&v, 4);
    return v;
  }
  uint64_t U64() {
    uint64_t v;
    Bytes(&v, 8);
    return v;
  }
  uint64_t Count(const char* what, uint64_t max) {
    const uint64_t v = U64();
    if (v > max) Fail(std::string(what) + " " + std::to_string(v) + " exceeds the limit " + std::to_string(max));
    return v;
  }
  std::string String(const char* what) {
    const uint64_t n = Count(what, std::min(kMaxString, left()));
    std::string s(n, '\0');
    Bytes(s.data(), n);
    return s;
  }
  void SkipString(const char* what) { Skip(Count(what, std::min(kMaxString, left()))); }

 private:
  FILE* f_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& path_;
};

}  // namespace

void CheckGgufFile(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) throw Error("IO_ERROR", "cannot stat " + path);
  if (!S_ISREG(st.st_mode)) throw Error("IO_ERROR", path + " is not a regular file");
  const File f = OpenForRead(path);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  Reader r(f.get(), size, path);

  char magic[4];
  r.Bytes(magic, 4);
  if (std::memcmp(magic, "GGUF", 4) != 0) r.Fail("not a GGUF file (bad magic)");
  const uint32_t version = r.U32();
  if (version != 2 && version != 3) r.Fail("unsupported GGUF version " + std::to_string(version));
  const uint64_t n_tensors = r.Count("tensor count", kMaxTensors);
  const uint64_t n_kv = r.Count("metadata count", kMaxKv);

  uint64_t alignment = 32;  // GGUF_DEFAULT_ALIGNMENT
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key = r.String("metadata key length");
    if (key.empty()) r.Fail("empty metadata key");
    uint32_t type = r.U32();
    if (type >= kTypeCount) r.Fail(key + ": unknown value type " + std::to_string(type));
    uint64_t n = 1;
    if (type == kArray) {
      type = r.U32();
      if (type >= kTypeCount || type == kArray) r.Fail(key + ": unsupported array element type " + std::to_string(type));
      n = r.Count("array length", kMaxArray);
      // Every element takes at least its fixed size (a string at least its 8-byte length).
      const uint64_t min_size = type == kString ? 8 : kScalarSize[type];
      if (n > r.left() / min_size) r.Fail(key + ": array of " + std::to_string(n) + " runs past the end of the file");
    }
    if (key == "general.alignment") {
      if (type != kU32 || n != 1) r.Fail("general.alignment must be a u32");
      alignment = r.U32();
      if (alignment == 0 || (alignment & (alignment - 1)) != 0) r.Fail("general.alignment must be a power of two");
      continue;
    }
    if (type == kString) {
      for (uint64_t j = 0; j < n; ++j) r.SkipString("string length");
    } else {
      r.Skip(n * kScalarSize[type]);  // n * size <= left, checked above
    }
  }

  struct Info {
    uint64_t offset, bytes;
  };
  std::vector<Info> infos;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const std::string name = r.String("tensor name length");
    if (name.size() >= GGML_MAX_NAME) r.Fail("tensor name " + name.substr(0, 32) + "... is longer than ggml allows");
    const uint32_t n_dims = r.U32();
    if (n_dims < 1 || n_dims > GGML_MAX_DIMS) r.Fail(name + ": " + std::to_string(n_dims) + " dimensions");
    uint64_t ne[GGML_MAX_DIMS] = {1, 1, 1, 1};
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      ne[d] = r.Count("dimension", kMaxDim);
      if (ne[d] == 0) r.Fail(name + ": zero dimension");
      // A tensor of one byte per element at least cannot hold more elements than 8x the file's
      // bytes (the densest type, 1.5625 bits per element); checked per factor, so no overflow.
      if (ne[d] > size * 8 / elements) r.Fail(name + ": more elements than a " + std::to_string(size) + "-byte file can hold");
      elements *= ne[d];
    }
    const uint32_t type_id = r.U32();
    if (type_id >= GGML_TYPE_COUNT) r.Fail(name + ": unknown ggml type " + std::to_string(type_id));
    const ggml_type type = static_cast<ggml_type>(type_id);
    const int64_t block = ggml_blck_size(type);
    const size_t type_size = ggml_type_size(type);
    if (block <= 0 || type_size == 0) r.Fail(name + ": unknown ggml type " + std::to_string(type_id));
    if (ne[0] % static_cast<uint64_t>(block) != 0) r.Fail(name + ": rows are not a whole number of " + ggml_type_name(type) + " blocks");
    const uint64_t offset = r.Count("tensor data offset", size);
    if (offset % alignment != 0) r.Fail(name + ": data offset is not aligned to " + std::to_string(alignment));
    // elements <= 8 * size, so these products stay far below 2^64.
    infos.push_back({offset, elements / static_cast<uint64_t>(block) * type_size});
  }
  const uint64_t data = (r.pos() + alignment - 1) / alignment * alignment;
  for (const Info& t : infos) {
    if (data > size || t.offset > size - data || t.bytes > size - data - t.offset) {
      throw Error("GGUF_INVALID", path + ": a tensor runs past the end of the file (truncated?)");
    }
  }
}

}  // namespace hovle
