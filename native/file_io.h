// Reading parts of a file by offset, with IO_ERROR for every failure (GGUF checks, weights).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "errors.h"

namespace hovle {

struct FileCloser {
  void operator()(FILE* f) const { if (f) std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;

inline File OpenForRead(const std::string& path) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) throw Error("IO_ERROR", "cannot open " + path);
  return f;
}

// `n` bytes at `offset` into `dst`; `what` names them for the error ("cannot read X from PATH").
inline void ReadAt(FILE* f, uint64_t offset, void* dst, size_t n, const std::string& what, const std::string& path) {
  if (fseeko(f, static_cast<off_t>(offset), SEEK_SET) != 0 || std::fread(dst, 1, n, f) != n) {
    throw Error("IO_ERROR", "cannot read " + what + " from " + path);
  }
}

}  // namespace hovle
