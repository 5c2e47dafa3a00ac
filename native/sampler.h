// Token sampling over one row of logits: bias, penalties, temperature, top-k, min-p, top-p, then
// a draw from a seeded mulberry32 generator: same seed and inputs, same tokens (across C
// libraries, up to last-bit differences of exp()). The only implementation: the JS Sampler and
// the decode run both call it. It draws what the TypeScript sampler it replaced drew
// (test/helpers/reference-sampler.ts), except where a top-p or min-p cut lands within rounding
// of a boundary (equal weights, say): that one summed normalized probabilities in sorted order,
// this one compares unnormalized sums, which is exact on such boundaries.
// NaN logits are never drawn; a +inf logit (an overflowed bias) takes all the mass.
//
// Why native: the JS version sorted the whole vocabulary (92553 ids) for every token, 60-70 ms on
// this machine's CPU, about as long as a Q4_0 decode step, and on the JS thread. Here the
// candidates are grouped into ranges of logit and only the range where the draw or a cut lands
// is sorted (Draw), so a token costs two passes over the vocabulary with one exp() each (1-2 ms
// at 92553 ids here, bench/sampler-speed.mjs), and a decode run samples on the model's thread
// without handing the logits to JS.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "errors.h"

namespace hovle {

struct SamplingParams {
  double temperature = 0;  // 0: the argmax (after bias and penalties)
  int top_k = 0;           // 0: off
  double top_p = 1;        // 1: off
  double min_p = 0;        // 0: off
  double repeat_penalty = 1;  // llama.cpp style: positive logits divided, negative multiplied
  double presence_penalty = 0;
  double frequency_penalty = 0;
  int penalty_window = 64;  // the last N tokens of the history; 0: no penalties
  std::vector<std::pair<int32_t, double>> bias;  // added to the logits; -inf bans
};

class TokenSampler {
 public:
  // Throws hovle::Error INVALID_ARGUMENT for out-of-range parameters or bias ids outside
  // [0, n_vocab).
  TokenSampler(SamplingParams params, int n_vocab, uint32_t state);

  // The next token for `logits` (n_vocab values); `history` is the text so far that penalties
  // look at (its last penalty_window ids). Throws INVALID_ARGUMENT when bias and penalties leave
  // no token with a finite logit.
  int32_t Sample(const float* logits, const int32_t* history, size_t n_history);

  uint32_t state() const { return state_; }
  void set_state(uint32_t s) { state_ = s; }
  const SamplingParams& params() const { return p_; }
  int n_vocab() const { return n_vocab_; }
  // Greedy: the pick is the plain argmax of the logits (no bias, no penalty, temperature 0).
  bool greedy() const;

 private:
  struct Cand {
    float v;
    int32_t id;
    double w;  // exp((v - max) / temperature)
  };
  double Random();
  void ApplyBiasAndPenalties(const int32_t* history, size_t n_history);
  int32_t Argmax() const;
  int32_t Draw();
  // Orders bucket b's candidates (largest logit first, lower id first among equals), once.
  void SortBucket(size_t b);
  static constexpr size_t kBuckets = 1024;

  SamplingParams p_;
  int n_vocab_;
  uint32_t state_;
  std::vector<float> l_;     // the logits after bias and penalties
  std::vector<Cand> cands_;  // the tokens still in the draw, grouped by bucket
  std::vector<Cand> grouped_;
  std::vector<uint32_t> bucket_start_, bucket_next_;
  std::vector<double> bucket_sum_, bucket_min_w_;
  std::vector<uint8_t> bucket_sorted_;
};

// Reads {temperature, topK, topP, minP, repeatPenalty, presencePenalty, frequencyPenalty,
// penaltyWindow, biasIds: Int32Array, biasValues: Float64Array} (absent keys: off). Throws
// Napi errors with code INVALID_ARGUMENT.
SamplingParams ParseSamplingParams(Napi::Env env, const Napi::Object& o);

// The native half of the JS Sampler: new Sampler(params, nVocab, state), .sample(logits,
// history), .state (get/set), .greedy. A decode run copies it (decode_run.h).
class SamplerWrap : public Napi::ObjectWrap<SamplerWrap>, public GuardedMethods<SamplerWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit SamplerWrap(const Napi::CallbackInfo& info);
  static bool Is(Napi::Env env, const Napi::Value& v);
  static SamplerWrap* From(Napi::Env env, const Napi::Value& v);
  TokenSampler& sampler() { return *s_; }

 private:
  Napi::Value Sample(const Napi::CallbackInfo& info);
  Napi::Value GetState(const Napi::CallbackInfo& info);
  Napi::Value GetGreedy(const Napi::CallbackInfo& info);
  void SetState(const Napi::CallbackInfo& info, const Napi::Value& v);
  std::unique_ptr<TokenSampler> s_;
};

}  // namespace hovle
