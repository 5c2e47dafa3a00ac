// A structural check of a GGUF file's header, metadata and tensor table, run before ggml's own
// parser (gguf_init_from_file) sees the file.
#pragma once

#include <string>

namespace hovle {

// Walks the header, every metadata entry and every tensor-table entry with the limits of the JS
// reader (src/gguf/reader.ts): counts, string and array lengths against the bytes left, value
// and tensor types, dimension counts, dimensions and their product (no overflow), block
// alignment of rows, offsets (aligned, inside the file) and tensor sizes. Throws GGUF_INVALID
// naming the problem, IO_ERROR when the file cannot be read.
//
// Why, when ggml validates too: its parser computes a tensor's element count before checking
// it for overflow (signed overflow, undefined behaviour, which can skip the check) and loads
// unvalidated type ids into enums; the fuzzer (scripts/fuzz/gguf_fuzz.cpp) reports both. The JS
// reader runs first in the addon, but the native loader must not depend on it.
void CheckGgufFile(const std::string& path);

}  // namespace hovle
