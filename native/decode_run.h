// Generation as one task on the model's thread: each step evaluates the previous pick and takes
// the next one, greedily in the graph or with a sampler from the logits, and the picks reach JS
// through a thread-safe callback while the next step already runs.
//
// Why: with one evaluate() per token, every step waits for a round trip through the event loop
// (task queued, promise settled, JS picks up the token, next task queued). On a GPU a step is
// ~2 ms and that hop was a measurable part of it (~0.4-0.6 ms of host work per step on the H200,
// cc787db); llama-bench and llama.cpp's own loops have no such hop. Sampled decoding has the same
// hop and also handed each step's logits (92553 floats) to JS to sample there.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "model.h"
#include "sampler.h"

namespace hovle {

// Starts the run: evaluates `first` at the context's current end, then each pick in turn, for at
// most `max_steps` evaluations. Ends after a pick found in `stop_ids` (not evaluated), when the
// cache is full, or when stop() is called (checked between steps). When another context's call
// is queued on the model's thread the run lets it go first between two steps, so sessions
// sharing a model still take turns token by token. Without a sampler each pick is the argmax,
// taken on the device; with one (a copy of it: the caller's is not touched) each step reads the
// logits back and samples, with `history` (the text before `first`) and the picks so far as the
// penalties' history. `on_pick(index, id, state)` is called on the JS thread for each pick, in
// order, with the sampler's state after it (0 without a sampler); the promise's result also
// lists every pick, because callbacks may arrive after it settles. Returns {promise, stop}; the
// promise resolves with {picks: Int32Array, states: Uint32Array, reason, error?}, where a failed
// step's error (a hovle::Error, e.g. an id the cache cannot take) comes after the picks made
// before it instead of rejecting them away.
Napi::Value QueueDecodeRun(Napi::Env env, std::shared_ptr<Context> ctx, int32_t first, int max_steps,
                           std::vector<int32_t> stop_ids, Napi::Function on_pick,
                           std::unique_ptr<TokenSampler> sampler, std::vector<int32_t> history);

}  // namespace hovle
