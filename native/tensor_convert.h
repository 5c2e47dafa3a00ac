// convertRows(): turns rows of one ggml type into another (float conversion or ggml's own
// quantizers) on several threads, off the JS thread. The converter and `hovle quantize` stream
// every tensor through it in bounded chunks of rows.
#pragma once

#include <napi.h>

namespace hovle {

// convertRows(src: Uint8Array, srcType: number, dstType: number, rows: number, cols: number,
//             threads: number): Promise<{ data: Buffer, nonFinite: number }>
// nonFinite counts NaN/Inf values in the source (the result is still produced).
Napi::Value ConvertRows(const Napi::CallbackInfo& info);

}  // namespace hovle
