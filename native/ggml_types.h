// The ggml tensor types, as ggml itself describes them, so JS never keeps its own copy of block
// sizes and byte sizes (the GGUF writer and reader size everything from this table).
#pragma once

#include <napi.h>

#include "ggml.h"

namespace hovle {

// ggmlTypes(): Array<{ id, name, blockSize, typeSize, isQuantized, canRead, canWrite }>
Napi::Value GgmlTypes(const Napi::CallbackInfo& info);

// True for a valid, non-removed ggml type id.
bool IsKnownType(int id);
// ggml can turn rows of this type into float32.
bool CanRead(ggml_type type);
// ggml_quantize_chunk can produce this type without an importance matrix.
bool CanWrite(ggml_type type);

}  // namespace hovle
