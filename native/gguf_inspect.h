// ggufInspect(): what ggml's own GGUF parser (gguf.cpp, the one the runtime loads with) sees in
// a file. Used to prove that files hovle writes are read identically by ggml.
#pragma once

#include <napi.h>

namespace hovle {

// ggufInspect(path: string): Promise<{ version, alignment, dataOffset, keys: [{key, type}],
//                                      tensors: [{ name, type, ne: number[4], offset, size }] }>
Napi::Value GgufInspect(const Napi::CallbackInfo& info);

}  // namespace hovle
