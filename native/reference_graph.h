// A small fixed graph (mul_mat with f32/f16/q8_0/q4_0 weights, rms_norm, mul, rope NeoX,
// soft_max, add) run on one named ggml device. Comparing its output across devices is how
// tests and `hovle info --check` prove a backend computes, not just compiles.
#pragma once

#include <napi.h>

namespace hovle {

// runReferenceGraph(device: string, weightType: string, seed: number): Promise<{output, shape}>
Napi::Value RunReferenceGraph(const Napi::CallbackInfo& info);

}  // namespace hovle
