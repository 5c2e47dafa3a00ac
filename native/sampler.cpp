#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <unordered_map>

#include "addon_data.h"
#include "errors.h"
#include "js_values.h"

namespace hovle {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

void Check(bool ok, const std::string& what) {
  if (!ok) throw Error("INVALID_ARGUMENT", what);
}

// The draw's order: largest logit first, lower id first among equals (a strict weak order: NaN
// never reaches it). A function object, so std::sort inlines it.
struct RankedBefore {
  template <typename C>
  bool operator()(const C& x, const C& y) const {
    return x.v > y.v || (x.v == y.v && x.id < y.id);
  }
};

}  // namespace

TokenSampler::TokenSampler(SamplingParams params, int n_vocab, uint32_t state)
    : p_(std::move(params)), n_vocab_(n_vocab), state_(state) {
  Check(n_vocab_ > 0, "the vocabulary size must be positive");
  Check(p_.temperature >= 0, "temperature must be a number >= 0");
  Check(p_.top_k >= 0, "topK must be a non-negative integer");
  Check(p_.top_p >= 0 && p_.top_p <= 1, "topP must be a number in [0, 1]");
  Check(p_.min_p >= 0 && p_.min_p <= 1, "minP must be a number in [0, 1]");
  Check(p_.repeat_penalty > 0 && std::isfinite(p_.repeat_penalty), "repeatPenalty must be a finite number > 0");
  Check(p_.presence_penalty >= -2 && p_.presence_penalty <= 2, "presencePenalty must be a number in [-2, 2]");
  Check(p_.frequency_penalty >= -2 && p_.frequency_penalty <= 2, "frequencyPenalty must be a number in [-2, 2]");
  Check(p_.penalty_window >= 0, "penaltyWindow must be a non-negative integer");
  for (const auto& [id, b] : p_.bias) {
    Check(id >= 0 && id < n_vocab_, "logitBias ids must be token ids in the vocabulary");
    Check(b == -kInf || std::isfinite(b), "logitBias values must be finite numbers or -Infinity");
  }
  l_.resize(static_cast<size_t>(n_vocab_));
}

bool TokenSampler::greedy() const {
  return p_.temperature == 0 && p_.bias.empty() && p_.repeat_penalty == 1 && p_.presence_penalty == 0 &&
         p_.frequency_penalty == 0;
}

// mulberry32, the generator the JS sampler used: the same stream from the same seed.
double TokenSampler::Random() {
  state_ += 0x6d2b79f5u;
  uint32_t t = state_;
  t = (t ^ (t >> 15)) * (t | 1u);
  t ^= t + (t ^ (t >> 7)) * (t | 61u);
  return static_cast<double>(t ^ (t >> 14)) / 4294967296.0;
}

// The logits are float32 and so are the adjusted ones (the arithmetic in double, stored
// rounded), as in the JS sampler's Float32Array.
void TokenSampler::ApplyBiasAndPenalties(const int32_t* history, size_t n_history) {
  for (const auto& [id, b] : p_.bias) l_[id] = static_cast<float>(static_cast<double>(l_[id]) + b);
  const bool penalize = p_.repeat_penalty != 1 || p_.presence_penalty != 0 || p_.frequency_penalty != 0;
  if (!penalize || p_.penalty_window == 0 || n_history == 0) return;
  const size_t n = std::min(n_history, static_cast<size_t>(p_.penalty_window));
  std::unordered_map<int32_t, int> counts;
  for (size_t i = n_history - n; i < n_history; i++) {
    if (history[i] >= 0 && history[i] < n_vocab_) counts[history[i]]++;
  }
  for (const auto& [t, c] : counts) {
    double v = l_[t];
    if (p_.repeat_penalty != 1) v = v > 0 ? v / p_.repeat_penalty : v * p_.repeat_penalty;
    v = static_cast<double>(static_cast<float>(v)) - (p_.presence_penalty + c * p_.frequency_penalty);
    l_[t] = static_cast<float>(v);
  }
}

// The first largest logit; NaN is never picked (as in Draw), and -inf counts as banned.
int32_t TokenSampler::Argmax() const {
  int64_t best = -1;
  for (size_t i = 0; i < l_.size(); i++) {
    if (l_[i] > -std::numeric_limits<float>::infinity() && (best < 0 || l_[i] > l_[best])) best = static_cast<int64_t>(i);
  }
  if (best < 0) throw Error("INVALID_ARGUMENT", "logitBias and the penalties leave no token to pick");
  return static_cast<int32_t>(best);
}

void TokenSampler::SortBucket(size_t b) {
  if (bucket_sorted_[b]) return;
  std::sort(cands_.begin() + bucket_start_[b], cands_.begin() + bucket_start_[b + 1], RankedBefore());
  bucket_sorted_[b] = 1;
}

// Draws as if the candidates were sorted (largest logit first, lower id first among equals) and
// the draw walked them from the top: r = u * (sum of the kept weights), the first token at which
// the running sum reaches r. Instead of sorting, the candidates are grouped into kBuckets equal
// ranges of logit, which keeps that order between groups; a group is skipped by its sum and
// sorted only when the walk (or a cut) ends inside it. A token costs two passes over the
// vocabulary and an exp() each, whatever the distribution's shape (sorting all 92553 ids took
// ~5 ms on a flat one).
int32_t TokenSampler::Draw() {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  // Candidates: every token above -inf (banned). The comparison also leaves NaN out, which would
  // otherwise break the ordering's strict weak order.
  // (Written without a branch: push_back per token cost ~10 ns each.)
  cands_.resize(l_.size());
  size_t n = 0;
  float max = kNegInf;
  for (size_t i = 0; i < l_.size(); i++) {
    const float v = l_[i];
    cands_[n] = {v, static_cast<int32_t>(i), 0};
    n += v > kNegInf;
    max = std::max(max, v);  // NaN never wins: std::max keeps the first argument
  }
  cands_.resize(n);
  if (cands_.empty()) throw Error("INVALID_ARGUMENT", "logitBias and the penalties leave no token to sample");
  if (max == std::numeric_limits<float>::infinity()) {
    // A logit overflowed (a huge bias, a tiny repeatPenalty): the softmax's limit puts all the
    // mass on the +inf tokens, equally. As logit 0 each, they take the ordinary path.
    size_t k = 0;
    for (const Cand& c : cands_) {
      if (c.v == max) cands_[k++] = {0, c.id, 0};
    }
    cands_.resize(k);
    max = 0;
  }
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < cands_.size()) {
    std::nth_element(cands_.begin(), cands_.begin() + p_.top_k, cands_.end(), RankedBefore());
    cands_.resize(static_cast<size_t>(p_.top_k));
    // Back in id order, so the sums below do not depend on the standard library's nth_element.
    std::sort(cands_.begin(), cands_.end(), [](const Cand& x, const Cand& y) { return x.id < y.id; });
  }
  float min = max;
  for (const Cand& c : cands_) min = std::min(min, c.v);

  // Group by logit: bucket 0 holds the largest. (max - v) * scale is monotonic in v, so a bucket
  // never holds a token ranked above one in an earlier bucket.
  const double range = static_cast<double>(max) - static_cast<double>(min);
  // Both ends are finite here, so range is too (a double holds float max - float lowest).
  const double scale = range > 0 ? kBuckets / range : 0;
  const auto bucket_of = [&](float v) {
    return std::min(kBuckets - 1, static_cast<size_t>((static_cast<double>(max) - static_cast<double>(v)) * scale));
  };
  bucket_start_.assign(kBuckets + 1, 0);
  bucket_sum_.assign(kBuckets, 0);
  bucket_min_w_.assign(kBuckets, 1);
  bucket_sorted_.assign(kBuckets, 0);
  // The weights exp((l - max) / T) are the unnormalized softmax; the top token's is exactly 1.
  double total = 0;
  for (Cand& c : cands_) {
    c.w = std::exp((static_cast<double>(c.v) - static_cast<double>(max)) / p_.temperature);
    total += c.w;
    const size_t k = bucket_of(c.v);
    bucket_start_[k + 1]++;
    bucket_sum_[k] += c.w;
    bucket_min_w_[k] = std::min(bucket_min_w_[k], c.w);
  }
  for (size_t k = 0; k < kBuckets; k++) bucket_start_[k + 1] += bucket_start_[k];
  grouped_.resize(cands_.size());
  {
    std::vector<uint32_t>& next = bucket_next_;
    next.assign(bucket_start_.begin(), bucket_start_.end() - 1);
    for (const Cand& c : cands_) grouped_[next[bucket_of(c.v)]++] = c;
    cands_.swap(grouped_);
  }

  // min-p keeps the tokens whose weight is at least min_p times the top one's; top-p then keeps
  // the shortest run from the top whose probability reaches top_p (at least one token). Both
  // keep a prefix of the ranking: whole buckets, then part of the one where the cut falls.
  size_t cut_bucket = kBuckets, cut_count = 0;  // the kept prefix ends inside cut_bucket
  double kept_total = total;
  if (p_.min_p > 0 || p_.top_p < 1) {
    const double target = p_.top_p * total;
    double acc = 0;
    size_t kept_n = 0;
    for (size_t k = 0; k < kBuckets && cut_bucket == kBuckets; k++) {
      const size_t size = bucket_start_[k + 1] - bucket_start_[k];
      if (size == 0) continue;
      if ((p_.min_p == 0 || bucket_min_w_[k] >= p_.min_p) && (p_.top_p >= 1 || acc + bucket_sum_[k] < target)) {
        acc += bucket_sum_[k];
        kept_n += size;
        continue;
      }
      SortBucket(k);
      for (size_t j = 0; j < size; j++) {
        const double w = cands_[bucket_start_[k] + j].w;
        if (kept_n > 0 && ((p_.min_p > 0 && w < p_.min_p) || (p_.top_p < 1 && acc >= target))) {
          cut_bucket = k;
          cut_count = j;
          break;
        }
        acc += w;
        kept_n++;
      }
    }
    kept_total = acc;
  }

  double r = Random() * kept_total;
  const size_t end_bucket = std::min(cut_bucket, kBuckets - 1);
  const auto kept_in = [&](size_t k) { return k == cut_bucket ? cut_count : bucket_start_[k + 1] - bucket_start_[k]; };
  for (size_t k = 0; k <= end_bucket; k++) {
    const size_t size = kept_in(k);
    if (size == 0) continue;
    if (k != cut_bucket && r - bucket_sum_[k] > 0) {
      r -= bucket_sum_[k];
      continue;
    }
    SortBucket(k);
    for (size_t j = 0; j < size; j++) {
      const Cand& c = cands_[bucket_start_[k] + j];
      r -= c.w;
      if (r <= 0) return c.id;
    }
  }
  // Rounding (the sums are taken in another order than the walk) left a sliver of r past the
  // kept tokens (u < 1 - 2^-32 leaves a margin far wider than the rounding, so in practice
  // never): the walk ends at the lowest-ranked kept token that has a weight.
  for (size_t k = end_bucket + 1; k-- > 0;) {
    const size_t size = kept_in(k);
    if (size == 0) continue;
    SortBucket(k);
    for (size_t j = size; j-- > 0;) {
      if (cands_[bucket_start_[k] + j].w > 0) return cands_[bucket_start_[k] + j].id;
    }
  }
  return cands_[0].id;  // every weight 0: cannot happen (the top token's is exactly 1)
}

int32_t TokenSampler::Sample(const float* logits, const int32_t* history, size_t n_history) {
  std::copy(logits, logits + n_vocab_, l_.begin());
  ApplyBiasAndPenalties(history, n_history);
  if (p_.temperature == 0) return Argmax();
  return Draw();
}

// ------------------------------------------------------------------ binding

namespace {

// A generator state from JS: a 32-bit unsigned integer.
uint32_t StateFrom(Napi::Env env, const Napi::Value& v) {
  const double s = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (!(s >= 0 && s <= UINT32_MAX) || std::floor(s) != s) {
    throw MakeError(env, "INVALID_ARGUMENT", "the sampler state must be a 32-bit unsigned integer");
  }
  return static_cast<uint32_t>(s);
}

}  // namespace

SamplingParams ParseSamplingParams(Napi::Env env, const Napi::Object& o) {
  SamplingParams p;
  p.temperature = NumberAt(o, "temperature", 0);
  p.top_k = IntAt(o, "topK", 0, INT_MAX, 0);
  p.top_p = NumberAt(o, "topP", 1);
  p.min_p = NumberAt(o, "minP", 0);
  p.repeat_penalty = NumberAt(o, "repeatPenalty", 1);
  p.presence_penalty = NumberAt(o, "presencePenalty", 0);
  p.frequency_penalty = NumberAt(o, "frequencyPenalty", 0);
  p.penalty_window = IntAt(o, "penaltyWindow", 0, INT_MAX, 64);
  Napi::Value ids = o.Get("biasIds"), values = o.Get("biasValues");
  if (!ids.IsUndefined() || !values.IsUndefined()) {
    if (!ids.IsTypedArray() || ids.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        !values.IsTypedArray() || values.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
        ids.As<Napi::TypedArray>().ElementLength() != values.As<Napi::TypedArray>().ElementLength()) {
      throw MakeError(env, "INVALID_ARGUMENT", "biasIds and biasValues must be an Int32Array and a Float64Array of one length");
    }
    Napi::Int32Array i = ids.As<Napi::Int32Array>();
    Napi::Float64Array v = values.As<Napi::Float64Array>();
    for (size_t k = 0; k < i.ElementLength(); k++) p.bias.emplace_back(i[k], v[k]);
  }
  return p;
}

Napi::Function SamplerWrap::Define(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeSampler", {
      InstanceMethod("sample", &SamplerWrap::Guard<&SamplerWrap::Sample>),
      InstanceAccessor("state", &SamplerWrap::GetState, &SamplerWrap::SetState),
      InstanceAccessor("greedy", &SamplerWrap::GetGreedy, nullptr),
  });
  AddonData::Get(env).samplerCtor = Napi::Persistent(f);
  return f;
}

// new Sampler(params, nVocab, state)
SamplerWrap::SamplerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SamplerWrap>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw MakeError(env, "INVALID_ARGUMENT", "the sampling parameters must be an object");
  SamplingParams p = ParseSamplingParams(env, info[0].As<Napi::Object>());
  const auto n_vocab = static_cast<int>(IntArg(info, 1, "nVocab", 1, INT32_MAX));
  const uint32_t state = StateFrom(env, info[2]);
  s_ = RethrowAsJs(env, [&] { return std::make_unique<TokenSampler>(std::move(p), n_vocab, state); });
}

bool SamplerWrap::Is(Napi::Env env, const Napi::Value& v) {
  return v.IsObject() && v.As<Napi::Object>().InstanceOf(AddonData::Get(env).samplerCtor.Value());
}

SamplerWrap* SamplerWrap::From(Napi::Env env, const Napi::Value& v) {
  if (!Is(env, v)) throw MakeError(env, "INVALID_ARGUMENT", "expected a native sampler");
  return Napi::ObjectWrap<SamplerWrap>::Unwrap(v.As<Napi::Object>());
}

// sample(logits: Float32Array of nVocab, history: Int32Array) -> id
Napi::Value SamplerWrap::Sample(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
      info[0].As<Napi::TypedArray>().ElementLength() != static_cast<size_t>(s_->n_vocab())) {
    throw MakeError(env, "INVALID_ARGUMENT", "logits must be a Float32Array of one value per vocabulary entry");
  }
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw MakeError(env, "INVALID_ARGUMENT", "history must be an Int32Array");
  }
  Napi::Float32Array logits = info[0].As<Napi::Float32Array>();
  Napi::Int32Array history = info[1].As<Napi::Int32Array>();
  return Napi::Number::New(env, s_->Sample(logits.Data(), history.Data(), history.ElementLength()));
}

Napi::Value SamplerWrap::GetGreedy(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), s_->greedy());
}

Napi::Value SamplerWrap::GetState(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), s_->state());
}

void SamplerWrap::SetState(const Napi::CallbackInfo& info, const Napi::Value& v) {
  s_->set_state(StateFrom(info.Env(), v));
}

}  // namespace hovle
