#pragma once

#include <napi.h>

namespace hovle {

// createTokenizer({ tokens, scores, types, added, bosId, unkId, addSpacePrefix, byteFallback,
//                   removeExtraWhitespaces }) -> { encode(text, addBos): Int32Array }
Napi::Value CreateTokenizer(const Napi::CallbackInfo& info);

}  // namespace hovle
