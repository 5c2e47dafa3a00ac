// Graph builders (one function per block) and the stage runners of a Context.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <string>

#include "cpu_compute.h"
#include "errors.h"
#include "huge_pages.h"
#include "memory.h"
#include "ggml-alloc.h"
#include "ggml-cpu.h"
#include "model.h"

namespace hovle {
namespace {

constexpr int kGraphSize = 8192;
// Tiles per vision graph: bounds the compute buffer (~12 MB of activations per tile at H=2048).
// Each tile's matmuls have 1024 rows already: one tile per graph encodes 7 tiles as fast as
// four did (1.1-1.2 s, Q4_0, 2 threads) with a compute buffer ~40 MB smaller.
constexpr int kTilesPerGraph = 1;
// From this many tokens per micro-batch the FFN's activation is computed in place (BuildSegment).
constexpr int kInPlaceSwigluTokens = 64;
// Attention reads the cache in spans of this many rows (the mask hides the rows past the batch),
// and a GPU's cache is allocated in whole spans. So a decode step's graph is the previous one's
// for 256 tokens at a time: ggml-cuda replays it as a CUDA graph instead of launching every
// kernel again (it does when shapes and addresses repeat), and its flash-attention vector
// kernel, the one for single-token queries, wants the KV length a multiple of 256. Cleared
// cache rows keep the masked products finite. llama.cpp pads its cache the same way.
constexpr int kKvPad = 256;
// A call of this many tokens is a prefill that may touch the whole compute buffer: freed heap
// memory is handed back first (ReleaseFreeHeap). Decode steps skip it, and so do contexts whose
// layers all run on a GPU: their compute buffers are device memory, and the trim itself (a walk
// of every malloc arena) costs milliseconds, a tenth of a 300-token prefill there.
constexpr int kReleaseHeapTokens = 64;
// Most rows of logits one graph computes. A call asking for more (evaluate() returns every
// position's by default) computes its batch's final hidden rows in the batch's graph and their
// logits in head graphs of this many rows. So no graph outgrows the compute buffers measured at
// creation: 512 rows would add 181 MiB (92553 floats each), and on a device growing a buffer
// means freeing and reallocating it mid-context, which Mesa 22.3 lavapipe double-frees (see
// Init). 32 rows fit in what a prefill batch needs anyway (measured: Q4_0, batch 256 and 512,
// with and without flash attention, 4096 positions); 64 added 1.1 MiB at batch 256.
constexpr int kLogitRowsPerGraph = 32;
// The same, when the head's weight stays in host memory beside a device (partial offload).
// ggml's CUDA and Vulkan backends take over a matmul of 32 rows or more whose weight is in host
// memory (op offload, GGML_OP_OFFLOAD_MIN_BATCH), copying the weight into the device's compute
// buffer for it: 148 MiB for a Q6_K head, 362 MiB at F16, reserved by every such context if its
// head graphs had 32 rows. Below that the head runs on the CPU, as a decode step's does.
constexpr int kLogitRowsHostHead = 16;
// A head graph's nodes and leafs: input, weight, matmul, argmax.
constexpr int kHeadGraphSize = 8;

ggml_type KvGgmlType(KvType t) {
  switch (t) {
    case KvType::F32: return GGML_TYPE_F32;
    case KvType::F16: return GGML_TYPE_F16;
    case KvType::Q8_0: return GGML_TYPE_Q8_0;
  }
  return GGML_TYPE_F16;
}

struct CtxFree {
  void operator()(ggml_context* c) const { ggml_free(c); }
};

// A segment's cached positions at the start of a call, put back if the call throws part-way
// (aborted, a compute buffer that cannot grow, a failed compute): a failed call leaves the cache
// as it found it. The rows written past them are never read; the next call overwrites them.
class RestoreOnThrow {
 public:
  explicit RestoreOnThrow(std::atomic<int>& past) : past_(past), start_(past.load()) {}
  ~RestoreOnThrow() {
    if (!kept_) past_ = start_;
  }
  RestoreOnThrow(const RestoreOnThrow&) = delete;
  RestoreOnThrow& operator=(const RestoreOnThrow&) = delete;
  void Keep() { kept_ = true; }

 private:
  std::atomic<int>& past_;
  const int start_;
  bool kept_ = false;
};

void ThrowIfCancelled(const CancelFlag& cancel, const char* what) {
  if (cancel && cancel->load(std::memory_order_relaxed)) throw Error("ABORTED", std::string(what) + " was aborted");
}

}  // namespace

Context::Context(std::shared_ptr<Model> model, const ContextOptions& opts) : model_(std::move(model)), opts_(opts) {
  const HParams& hp = model_->hp;
  if (opts_.n_ctx_emb <= 0 || opts_.n_ctx_llm <= 0 || opts_.n_batch <= 0 || opts_.threads <= 0) {
    throw Error("INVALID_ARGUMENT", "context sizes, batch size and threads must be positive");
  }
  // Off the CPU, attention always takes the flash-attention path: its cache reads are the
  // strided views every ggml backend implements, while the classic path's strided matmul
  // operands corrupt Mesa lavapipe's heap (scripts/probe-lavapipe-mulmat.sh).
  if (ggml_backend_dev_type(model_->device) != GGML_BACKEND_DEVICE_TYPE_CPU) opts_.flash_attn = true;
  if (opts_.kv_type == KvType::Q8_0 && !opts_.flash_attn) {
    throw Error("INVALID_ARGUMENT", "a q8_0 KV cache needs flash attention (flashAttention: true)");
  }
  if (opts_.kv_type == KvType::Q8_0 && (hp.emb.head_dim() % 32 != 0 || hp.llm.head_dim() % 32 != 0)) {
    throw Error("INVALID_ARGUMENT", "a q8_0 KV cache needs a head dimension divisible by 32");
  }
  try {
    Init();
  } catch (...) {
    Release();
    throw;
  }
}

void Context::Init() {
  const HParams& hp = model_->hp;
  ggml_backend_t cpu = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
  if (cpu == nullptr) throw Error("BACKEND_INIT_FAILED", "cannot initialise the CPU backend");
  cpu_backend_ = CpuBackendOnComputeThread(cpu);
  ggml_backend_cpu_set_n_threads(cpu_backend_, opts_.threads);
  const bool on_cpu = ggml_backend_dev_type(model_->device) == GGML_BACKEND_DEVICE_TYPE_CPU;
  if (!on_cpu) {
    backend_ = ggml_backend_dev_init(model_->device, nullptr);
    if (backend_ == nullptr) throw Error("BACKEND_INIT_FAILED", std::string("cannot initialise ") + ggml_backend_dev_name(model_->device));
  }

  host_compute_ = on_cpu || std::find(model_->layer_on_device.begin(), model_->layer_on_device.end(), false) != model_->layer_on_device.end();
  // The head's weight is on the device only when every block is (model_load.cpp).
  logit_rows_ = backend_ && host_compute_ ? kLogitRowsHostHead : kLogitRowsPerGraph;
  head_graph_mem_.resize(ggml_tensor_overhead() * kHeadGraphSize + ggml_graph_overhead_custom(kHeadGraphSize, false));

  // One cache context per device: each layer's K/V live where its weights are.
  const int n_layers = hp.emb.n_layer + hp.llm.n_layer;
  ggml_init_params kp{ggml_tensor_overhead() * (2 * n_layers + 4), nullptr, true};
  ggml_context* kv_cpu = ggml_init(kp);
  kv_ctx_.push_back(kv_cpu);
  ggml_context* kv_dev = ggml_init(kp);
  kv_ctx_.push_back(kv_dev);
  const ggml_type kt = KvGgmlType(opts_.kv_type);
  for (bool llm : {false, true}) {
    const SegmentHParams& s = model_->seg(llm);
    Kv& kv = llm ? kv_llm_ : kv_emb_;
    // Whole spans on a GPU (see kKvPad); on the CPU the rows a user never reaches would be
    // memory for nothing, and any KV length runs the same kernels there.
    const int n_ctx = llm ? opts_.n_ctx_llm : opts_.n_ctx_emb;
    // GGML_PAD of a size near INT_MAX would overflow int.
    if (!on_cpu && n_ctx > INT_MAX - kKvPad) throw Error("INVALID_ARGUMENT", "a context on a device holds fewer than 2^31 - 256 positions");
    const int n_rows = on_cpu ? n_ctx : GGML_PAD(n_ctx, kKvPad);
    for (int il = 0; il < s.n_layer; ++il) {
      ggml_context* c = model_->layer_on_device[model_->first_block(llm) + il] ? kv_dev : kv_cpu;
      // Token-major rows of head_dim * kv_heads, as llama.cpp lays its cache out: appending a
      // batch is one contiguous copy. Without flash attention V is kept transposed
      // ([n_ctx, head_dim * kv_heads]) so attention multiplies contiguous rows.
      const int64_t row = static_cast<int64_t>(s.head_dim()) * s.n_head_kv;
      kv.k.push_back(ggml_new_tensor_2d(c, kt, row, n_rows));
      kv.v.push_back(opts_.flash_attn ? ggml_new_tensor_2d(c, kt, row, n_rows) : ggml_new_tensor_2d(c, kt, n_rows, row));
    }
  }

  // Memory is checked before it is used. The caches' sizes are known up front; the compute
  // buffers are measured on the largest graphs, which needs the caches placed (in buffers that
  // are allocated but not yet touched, so on the host they take no memory until cleared).
  const std::pair<ggml_context*, ggml_backend_buffer_type_t> kv_sets[] = {
      {kv_cpu, ggml_backend_cpu_buffer_type()}, {kv_dev, ggml_backend_dev_buffer_type(model_->device)}};
  size_t kv_host = 0, kv_dev_bytes = 0;
  for (const auto& [c, buft] : kv_sets) {
    if (ggml_get_first_tensor(c) == nullptr) continue;
    (c == kv_cpu ? kv_host : kv_dev_bytes) += ggml_backend_alloc_ctx_tensors_from_buft_size(c, buft);
  }
  kv_bytes_ = kv_host + kv_dev_bytes;
  const std::string what = "a context of " + std::to_string(opts_.n_ctx_llm) + " positions (" +
                           std::to_string(opts_.n_ctx_emb) + " in the embedding module, " +
                           (opts_.kv_type == KvType::F32 ? "f32" : opts_.kv_type == KvType::F16 ? "f16" : "q8_0") + " KV cache)";
  const std::string hint = "Use a smaller contextSize, or kvType 'q8_0' (with flashAttention)";
  CheckMemory(nullptr, kv_host, what + ": its KV cache alone", opts_.memory_limit, hint);
  if (kv_dev_bytes > 0) CheckMemory(model_->device, kv_dev_bytes, what + ": its KV cache", opts_.memory_limit, hint);
  for (const auto& [c, buft] : kv_sets) {
    if (ggml_get_first_tensor(c) == nullptr) continue;
    ggml_backend_buffer_t b = ggml_backend_alloc_ctx_tensors_from_buft(c, buft);
    if (b == nullptr) {
      throw Error(c == kv_cpu ? "OUT_OF_MEMORY" : "OUT_OF_DEVICE_MEMORY",
                  "cannot allocate the KV cache (" + FormatMiB(c == kv_cpu ? kv_host : kv_dev_bytes) + ")");
    }
    if (c == kv_cpu) AdviseHugePages(b);
    kv_buf_.push_back(b);
  }

  ggml_backend_t backends[2];
  int n = 0;
  if (backend_) backends[n++] = backend_;
  backends[n++] = cpu_backend_;
  sched_ = ggml_backend_sched_new(backends, nullptr, n, kGraphSize, false, true);
  if (sched_ == nullptr) throw Error("INTERNAL", "cannot create the graph scheduler");
  graph_mem_.resize(ggml_tensor_overhead() * kGraphSize + ggml_graph_overhead_custom(kGraphSize, false));

  compute_checked_ = MeasureCompute();
  const size_t compute_host = compute_checked_.back();
  const size_t compute_dev = backend_ ? compute_checked_.front() : 0;
  compute_bytes_ = compute_host + compute_dev;
  CheckMemory(nullptr, kv_host + compute_host,
              what + ": KV cache " + FormatMiB(kv_host) + " + compute buffers " + FormatMiB(compute_host) + ",", opts_.memory_limit, hint);
  // The device's cache is allocated (and counted in its free memory) by now.
  if (compute_dev > 0) CheckMemory(model_->device, compute_dev, what + ": its compute buffers", opts_.memory_limit, hint);
  // On a device the compute buffers are allocated now, at the largest size measured, so later
  // graphs do not grow (free and reallocate) them between computes. A device buffer freed that
  // way after the vision graphs and a few prefill batches had used it is double-freed inside
  // Mesa 22.3 lavapipe's queue thread (heap corruption at the 13-tile fixture case).
  if (backend_) MeasureCompute(true);

  for (ggml_backend_buffer_t b : kv_buf_) ggml_backend_buffer_clear(b, 0);
}

void Context::Release() {
  if (kept_.ctx) ggml_free(kept_.ctx);
  kept_ = KeptForward{};
  if (sched_) ggml_backend_sched_free(sched_);
  sched_ = nullptr;
  for (ggml_backend_buffer_t b : kv_buf_) ggml_backend_buffer_free(b);
  kv_buf_.clear();
  for (ggml_context* c : kv_ctx_) ggml_free(c);
  kv_ctx_.clear();
  if (backend_) ggml_backend_free(backend_);
  backend_ = nullptr;
  if (cpu_backend_) ggml_backend_free(cpu_backend_);
  cpu_backend_ = nullptr;
}

Context::~Context() { Release(); }

void Context::Truncate(bool llm, int n) {
  std::atomic<int>& past = llm ? n_past_llm_ : n_past_emb_;
  if (n < 0 || n > past) throw Error("INVALID_ARGUMENT", "truncate beyond the cached length");
  past = n;
}

void Context::CopyCacheFrom(const Context& other) {
  if (other.model_ != model_ || other.opts_.kv_type != opts_.kv_type || other.opts_.flash_attn != opts_.flash_attn ||
      other.opts_.n_ctx_emb != opts_.n_ctx_emb || other.opts_.n_ctx_llm != opts_.n_ctx_llm) {
    throw Error("INVALID_ARGUMENT", "a fork needs the same model and cache settings");
  }
  for (bool llm : {false, true}) {
    const Kv& src = llm ? other.kv_llm_ : other.kv_emb_;
    Kv& dst = llm ? kv_llm_ : kv_emb_;
    for (size_t i = 0; i < src.k.size(); ++i) {
      ggml_backend_tensor_copy(src.k[i], dst.k[i]);
      ggml_backend_tensor_copy(src.v[i], dst.v[i]);
    }
  }
  n_past_emb_ = other.n_past_emb_.load();
  n_past_llm_ = other.n_past_llm_.load();
}

float Context::RopeBase(const SegmentHParams& s, int n_total) const {
  if (s.rope_scaling != 2 || s.n_ctx_train <= 0 || n_total <= s.n_ctx_train) return s.rope_base;
  // Dynamic NTK (HF): the base grows with the sequence length past the trained context.
  const double hd = s.head_dim();
  const double f = s.rope_factor;
  return static_cast<float>(s.rope_base * std::pow(f * n_total / s.n_ctx_train - (f - 1.0), hd / (hd - 2.0)));
}

int Context::KvSpan(bool llm, int n_end) const {
  const int rows = static_cast<int>((llm ? kv_llm_ : kv_emb_).k.front()->ne[1]);
  // Without flash attention the graph holds the position anyway (the V write) and the masked
  // columns would be multiplied and softmaxed, not skipped: no padding there.
  return opts_.flash_attn ? std::min(rows, GGML_PAD(n_end, kKvPad)) : n_end;
}

ggml_tensor* Context::BuildAttention(ggml_context* ctx, ggml_tensor* x, const LayerWeights& w, const SegmentHParams& s,
                                     const Kv& kv, int layer, int n_tokens, int n_past, const BatchInputs& in) {
  ggml_tensor* pos = in.pos;
  ggml_tensor* mask = in.mask;
  const int hd = s.head_dim();
  ggml_cgraph* gf = pending_graph_;
  ggml_tensor* q = ggml_reshape_3d(ctx, ggml_mul_mat(ctx, w.wq, x), hd, s.n_head, n_tokens);
  ggml_tensor* k = ggml_reshape_3d(ctx, ggml_mul_mat(ctx, w.wk, x), hd, s.n_head_kv, n_tokens);
  ggml_tensor* v = ggml_reshape_3d(ctx, ggml_mul_mat(ctx, w.wv, x), hd, s.n_head_kv, n_tokens);
  const float base = RopeBase(s, n_past + n_tokens);
  const float freq_scale = s.rope_scaling == 1 ? 1.0f / s.rope_factor : 1.0f;
  q = ggml_rope_ext(ctx, q, pos, nullptr, hd, GGML_ROPE_TYPE_NEOX, s.n_ctx_train, base, freq_scale, 0.0f, 1.0f, 32.0f, 1.0f);
  k = ggml_rope_ext(ctx, k, pos, nullptr, hd, GGML_ROPE_TYPE_NEOX, s.n_ctx_train, base, freq_scale, 0.0f, 1.0f, 32.0f, 1.0f);

  ggml_tensor* kc = kv.k[layer];
  ggml_tensor* vc = kv.v[layer];
  const int64_t row = static_cast<int64_t>(hd) * s.n_head_kv;
  // Append this batch to the cache, at the rows an input names (not a view at n_past, which
  // would change the graph every step). The writes are expanded into the graph before anything
  // reads the cache, so they run first.
  ggml_build_forward_expand(gf, ggml_set_rows(ctx, kc, ggml_reshape_2d(ctx, k, row, n_tokens), in.rows));
  if (opts_.flash_attn) {
    ggml_build_forward_expand(gf, ggml_set_rows(ctx, vc, ggml_reshape_2d(ctx, v, row, n_tokens), in.rows));
  } else {
    // Transposed V: one column per token, which set_rows cannot address; this path runs on the
    // CPU only (off the CPU attention is always flash attention).
    ggml_tensor* vdst = ggml_view_2d(ctx, vc, n_tokens, row, vc->nb[1], n_past * ggml_element_size(vc));
    ggml_build_forward_expand(gf, ggml_cpy(ctx, ggml_transpose(ctx, ggml_reshape_2d(ctx, v, row, n_tokens)), vdst));
  }

  const int n_kv = in.n_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // [hd, n_kv, kv_heads] views of the token-major cache.
  ggml_tensor* kview = ggml_view_3d(ctx, kc, hd, n_kv, s.n_head_kv, kc->nb[1], ggml_row_size(kc->type, hd), 0);
  ggml_tensor* out;
  if (opts_.flash_attn) {
    ggml_tensor* vview = ggml_view_3d(ctx, vc, hd, n_kv, s.n_head_kv, vc->nb[1], ggml_row_size(vc->type, hd), 0);
    out = ggml_flash_attn_ext(ctx, ggml_permute(ctx, q, 0, 2, 1, 3), kview, vview, mask, scale, 0.0f, 0.0f);
    ggml_flash_attn_ext_set_prec(out, GGML_PREC_F32);
  } else {
    ggml_tensor* qp = ggml_cont(ctx, ggml_permute(ctx, q, 0, 2, 1, 3));          // [hd, n, heads]
    ggml_tensor* kq = ggml_mul_mat(ctx, kview, qp);                                // [n_kv, n, heads]
    ggml_mul_mat_set_prec(kq, GGML_PREC_F32);
    kq = ggml_soft_max_ext(ctx, kq, mask, scale, 0.0f);
    ggml_tensor* vview = ggml_view_3d(ctx, vc, n_kv, hd, s.n_head_kv, vc->nb[1], vc->nb[1] * hd, 0);
    ggml_tensor* kqv = ggml_mul_mat(ctx, vview, kq);                               // [hd, n, heads]
    out = ggml_cont(ctx, ggml_permute(ctx, kqv, 0, 2, 1, 3));                      // [hd, heads, n]
  }
  out = ggml_reshape_2d(ctx, out, hd * s.n_head, n_tokens);
  return ggml_mul_mat(ctx, w.wo, out);
}

ggml_tensor* Context::BuildSegment(ggml_context* ctx, ggml_tensor* cur, bool llm, int n_tokens, int n_past,
                                   const BatchInputs& in) {
  const SegmentHParams& s = model_->seg(llm);
  const Kv& kv = llm ? kv_llm_ : kv_emb_;
  for (int il = 0; il < s.n_layer; ++il) {
    const LayerWeights& w = model_->layers[model_->first_block(llm) + il];
    ggml_tensor* x = ggml_mul(ctx, ggml_rms_norm(ctx, cur, s.eps), w.attn_norm);
    cur = ggml_add(ctx, cur, BuildAttention(ctx, x, w, s, kv, il, n_tokens, n_past, in));
    x = ggml_mul(ctx, ggml_rms_norm(ctx, cur, s.eps), w.ffn_norm);
    ggml_tensor* gate = ggml_mul_mat(ctx, w.ffn_gate, x);
    ggml_tensor* up = ggml_mul_mat(ctx, w.ffn_up, x);
    // The fused swiglu writes a third [n_ff, n_tokens] tensor while gate and up are live: at a
    // 512-token micro-batch that is 16 MB, a quarter of the compute buffer and of peak RSS above
    // the weights and cache. silu and mul run in place on gate's memory instead (the allocator
    // reuses a sole parent's buffer for both ops); small batches keep the single fused node, and
    // so do layers on a GPU, where memory is not the limit and one pass beats two.
    const bool in_place = n_tokens >= kInPlaceSwigluTokens && !model_->layer_on_device[model_->first_block(llm) + il];
    ggml_tensor* ffn = in_place ? ggml_mul(ctx, ggml_silu(ctx, gate), up) : ggml_swiglu_split(ctx, gate, up);
    cur = ggml_add(ctx, cur, ggml_mul_mat(ctx, w.ffn_down, ffn));
  }
  return cur;
}

ggml_tensor* Context::BuildShuffleProject(ggml_context* ctx, ggml_tensor* patches, int n_tiles) {
  const HParams& hp = model_->hp;
  const int H = hp.emb.n_embd;
  const int g2 = hp.grid() / 2;
  // Patches are row-major (y, x) per tile. Output token (y2, x2) concatenates patches
  // (2y2, 2x2), (2y2, 2x2+1), (2y2+1, 2x2), (2y2+1, 2x2+1): fold dx into the hidden dim,
  // swap x2 and dy, then fold dy too.
  ggml_tensor* x = ggml_reshape_4d(ctx, patches, 2 * H, g2, 2, g2 * n_tiles);  // [2H (dx,h), x2, dy, y2*t]
  x = ggml_cont(ctx, ggml_permute(ctx, x, 0, 2, 1, 3));                         // [2H, dy, x2, y2*t]
  x = ggml_reshape_2d(ctx, x, 4 * H, g2 * g2 * n_tiles);
  x = ggml_add(ctx, ggml_mul_mat(ctx, model_->fc1_w, x), model_->fc1_b);
  x = ggml_gelu_erf(ctx, x);
  return ggml_add(ctx, ggml_mul_mat(ctx, model_->fc2_w, x), model_->fc2_b);
}

void Context::Compute(ggml_cgraph* graph) {
  // The CPU backend's splits hop to the shared CPU compute thread (cpu_compute.h); the
  // scheduler and a device's calls stay on the model's thread.
  const ggml_status status = ggml_backend_sched_graph_compute(sched_, graph);
  if (status != GGML_STATUS_SUCCESS) {
    throw Error("COMPUTE_FAILED", "the backend failed to compute the graph");
  }
}

namespace {

// A graph being built in the context's scratch memory, allocated by the scheduler.
struct GraphScope {
  std::unique_ptr<ggml_context, CtxFree> ctx;
  ggml_cgraph* gf;
  explicit GraphScope(std::vector<uint8_t>& mem, int graph_size = kGraphSize) {
    ggml_init_params p{mem.size(), mem.data(), true};
    ctx.reset(ggml_init(p));
    gf = ggml_new_graph_custom(ctx.get(), graph_size, false);
  }
};

void FillCausalMask(std::vector<ggml_fp16_t>& mask, int n_kv, int n_tokens, int n_past) {
  mask.resize(static_cast<size_t>(n_kv) * n_tokens);
  const ggml_fp16_t zero = ggml_fp32_to_fp16(0.0f);
  const ggml_fp16_t neg = ggml_fp32_to_fp16(-std::numeric_limits<float>::infinity());
  for (int t = 0; t < n_tokens; ++t) {
    for (int j = 0; j < n_kv; ++j) mask[static_cast<size_t>(t) * n_kv + j] = j <= n_past + t ? zero : neg;
  }
}

}  // namespace

Context::BatchInputs Context::NewBatchInputs(ggml_context* ctx, bool llm, int n_tokens, int n_past) const {
  BatchInputs in{};
  in.n_kv = KvSpan(llm, n_past + n_tokens);
  in.pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_tokens);
  ggml_set_input(in.pos);
  in.rows = ggml_new_tensor_1d(ctx, GGML_TYPE_I64, n_tokens);
  ggml_set_input(in.rows);
  in.mask = ggml_new_tensor_2d(ctx, GGML_TYPE_F16, in.n_kv, n_tokens);
  ggml_set_input(in.mask);
  return in;
}

Context::VisionGraph Context::BuildVisionGraph(ggml_context* ctx, ggml_cgraph* gf, int nt, bool project) {
  const HParams& hp = model_->hp;
  const int H = hp.emb.n_embd;
  const int P = hp.patches_per_tile();
  ggml_tensor* inp = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, hp.image_size, hp.image_size, hp.n_channels, nt);
  ggml_set_input(inp);
  const int K = hp.patch_size * hp.patch_size * hp.n_channels;
  ggml_tensor* im = ggml_im2col(ctx, model_->patch_w, inp, hp.patch_size, hp.patch_size, 0, 0, 1, 1, true, GGML_TYPE_F32);
  ggml_tensor* cur = ggml_mul_mat(ctx, ggml_reshape_2d(ctx, model_->patch_w, K, H), ggml_reshape_2d(ctx, im, K, P * nt));
  cur = ggml_add(ctx, cur, model_->patch_b);
  ggml_tensor* pos = ggml_view_2d(ctx, model_->pos_embd, H, P, model_->pos_embd->nb[1], model_->pos_embd->nb[1]);
  if (pos->type != GGML_TYPE_F32) pos = ggml_cast(ctx, pos, GGML_TYPE_F32);
  cur = ggml_add(ctx, ggml_reshape_3d(ctx, cur, H, P, nt), pos);
  cur = ggml_reshape_2d(ctx, cur, H, P * nt);
  if (project) cur = BuildShuffleProject(ctx, cur, nt);
  ggml_set_output(cur);
  ggml_build_forward_expand(gf, cur);
  return {inp, cur};
}

Context::VisionGraph Context::BuildShuffleProjectGraph(ggml_context* ctx, ggml_cgraph* gf, int nt) {
  const HParams& hp = model_->hp;
  ggml_tensor* inp = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp.emb.n_embd, static_cast<int64_t>(hp.patches_per_tile()) * nt);
  ggml_set_input(inp);
  ggml_tensor* cur = BuildShuffleProject(ctx, inp, nt);
  ggml_set_output(cur);
  ggml_build_forward_expand(gf, cur);
  return {inp, cur};
}

Context::EmbedGraph Context::BuildEmbedGraph(ggml_context* ctx, ggml_cgraph* gf, int nb, int nb_img, int n_past, bool output) {
  const HParams& hp = model_->hp;
  pending_graph_ = gf;
  EmbedGraph g{};
  g.tid = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, nb);
  ggml_set_input(g.tid);
  ggml_tensor* cur = ggml_get_rows(ctx, model_->tok_embd, g.tid);
  if (nb_img > 0) {
    g.img = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp.emb.n_embd, nb_img);
    ggml_set_input(g.img);
    g.merge = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, nb);
    ggml_set_input(g.merge);
    cur = ggml_get_rows(ctx, ggml_concat(ctx, cur, g.img, 1), g.merge);
  }
  g.in = NewBatchInputs(ctx, false, nb, n_past);
  cur = BuildSegment(ctx, cur, false, nb, n_past, g.in);
  if (hp.normalize_output) cur = ggml_l2_norm(ctx, cur, 1e-12f);
  if (output) {
    ggml_set_output(cur);
    ggml_build_forward_expand(gf, cur);
  }
  g.out = cur;
  return g;
}

Context::LlmGraph Context::BuildLlmGraph(ggml_context* ctx, ggml_cgraph* gf, int nb, int n_past, int n_out, ggml_tensor* input,
                                        bool pick) {
  const HParams& hp = model_->hp;
  pending_graph_ = gf;
  LlmGraph g{};
  if (input == nullptr) {
    g.inp = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp.llm.n_embd, nb);
    ggml_set_input(g.inp);
    input = g.inp;
  }
  g.in = NewBatchInputs(ctx, true, nb, n_past);
  ggml_tensor* cur = BuildSegment(ctx, input, true, nb, n_past, g.in);
  if (n_out > 0) {
    g.sel = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_out);
    ggml_set_input(g.sel);
    cur = ggml_get_rows(ctx, cur, g.sel);
    cur = ggml_mul(ctx, ggml_rms_norm(ctx, cur, hp.llm.eps), model_->out_norm);
    if (n_out > logit_rows_) {
      g.hidden = cur;
      ggml_set_output(g.hidden);
      ggml_build_forward_expand(gf, g.hidden);
    } else {
      g.head = BuildHead(ctx, gf, cur, pick);
    }
  } else {
    // No logits wanted from this batch, but its layers must still fill the KV cache.
    ggml_build_forward_expand(gf, cur);
  }
  return g;
}

Context::HeadGraph Context::BuildHead(ggml_context* ctx, ggml_cgraph* gf, ggml_tensor* hidden, bool pick) {
  HeadGraph h{};
  h.out = ggml_mul_mat(ctx, model_->output, hidden);
  // Only what is read back is an output: with the picks, the logits are scratch.
  if (pick) {
    h.pick = ggml_argmax(ctx, h.out);
    ggml_set_output(h.pick);
    ggml_build_forward_expand(gf, h.pick);
  } else {
    ggml_set_output(h.out);
    ggml_build_forward_expand(gf, h.out);
  }
  return h;
}

void Context::ReadLogits(const LlmGraph& l, float* logits, int32_t* picks) {
  const int V = model_->hp.n_vocab;
  // A head's rows, from the `row`-th of the call's.
  const auto read = [&](const HeadGraph& h, int row) {
    if (h.pick) {
      ggml_backend_tensor_get(h.pick, picks + row, 0, ggml_nbytes(h.pick));
    } else if (h.out) {
      ggml_backend_tensor_get(h.out, logits + static_cast<size_t>(row) * V, 0, ggml_nbytes(h.out));
    }
  };
  if (!l.hidden) {
    read(l.head, 0);
    return;
  }
  // Read before the head graphs take the compute buffers over.
  const int H = model_->hp.llm.n_embd;
  const int n_out = static_cast<int>(l.hidden->ne[1]);
  std::vector<float> hidden(static_cast<size_t>(n_out) * H);
  ggml_backend_tensor_get(l.hidden, hidden.data(), 0, ggml_nbytes(l.hidden));
  for (int r0 = 0; r0 < n_out; r0 += logit_rows_) {
    const int nr = std::min(logit_rows_, n_out - r0);
    // Scratch of its own: the caller's graph, in graph_mem_, is still in scope.
    GraphScope g(head_graph_mem_, kHeadGraphSize);
    ggml_tensor* inp = ggml_new_tensor_2d(g.ctx.get(), GGML_TYPE_F32, H, nr);
    ggml_set_input(inp);
    const HeadGraph h = BuildHead(g.ctx.get(), g.gf, inp, picks != nullptr);
    AllocGraph(g.gf, "output graph");
    ggml_backend_tensor_set(inp, hidden.data() + static_cast<size_t>(r0) * H, 0, ggml_nbytes(inp));
    Compute(g.gf);
    read(h, r0);
  }
}

std::vector<size_t> Context::MeasureCompute(bool reserve) {
  const HParams& hp = model_->hp;
  const int n_backends = backend_ ? 2 : 1;
  std::vector<size_t> peak(n_backends, 0);
  // A scheduler of its own: measuring leaves the allocator with the graph's layout but without
  // buffers, which the next ggml_backend_sched_alloc_graph would take for allocated.
  ggml_backend_t backends[2] = {backend_ ? backend_ : cpu_backend_, cpu_backend_};
  std::unique_ptr<ggml_backend_sched, decltype(&ggml_backend_sched_free)> sched(
      reserve ? nullptr : ggml_backend_sched_new(backends, nullptr, n_backends, kGraphSize, false, true), &ggml_backend_sched_free);
  if (!reserve && !sched) throw Error("INTERNAL", "cannot create the graph scheduler");
  auto measure = [&](const std::function<void(ggml_context*, ggml_cgraph*)>& build) {
    GraphScope g(graph_mem_);
    build(g.ctx.get(), g.gf);
    if (reserve) {
      if (!ggml_backend_sched_reserve(sched_, g.gf)) throw Error("OUT_OF_DEVICE_MEMORY", "cannot allocate the compute buffers");
      return;
    }
    std::vector<size_t> sizes(n_backends, 0);
    ggml_backend_sched_reserve_size(sched.get(), g.gf, sizes.data());
    for (int i = 0; i < n_backends; ++i) peak[i] = std::max(peak[i], sizes[i]);
  };
  // A prefill batch that ends at a full context (the largest attention), with as many rows of
  // logits as a graph computes.
  const int nb_llm = std::min(opts_.n_batch, opts_.n_ctx_llm);
  const int n_out = std::min(nb_llm, logit_rows_);
  measure([&](ggml_context* c, ggml_cgraph* gf) { BuildLlmGraph(c, gf, nb_llm, opts_.n_ctx_llm - nb_llm, n_out); });
  const int nb_emb = std::min(opts_.n_batch, opts_.n_ctx_emb);
  measure([&](ggml_context* c, ggml_cgraph* gf) { BuildEmbedGraph(c, gf, nb_emb, nb_emb, opts_.n_ctx_emb - nb_emb); });
  const int nb_fwd = std::min(nb_llm, nb_emb);
  measure([&](ggml_context* c, ggml_cgraph* gf) {
    const EmbedGraph e = BuildEmbedGraph(c, gf, nb_fwd, nb_fwd, opts_.n_ctx_emb - nb_fwd, false);
    BuildLlmGraph(c, gf, nb_fwd, opts_.n_ctx_llm - nb_fwd, std::min(nb_fwd, logit_rows_), e.out);
  });
  measure([&](ggml_context* c, ggml_cgraph* gf) {
    ggml_tensor* inp = ggml_new_tensor_2d(c, GGML_TYPE_F32, hp.llm.n_embd, n_out);
    ggml_set_input(inp);
    BuildHead(c, gf, inp, false);
  });
  measure([&](ggml_context* c, ggml_cgraph* gf) { BuildVisionGraph(c, gf, kTilesPerGraph, !hp.post); });
  if (hp.post) measure([&](ggml_context* c, ggml_cgraph* gf) { BuildShuffleProjectGraph(c, gf, kTilesPerGraph); });
  pending_graph_ = nullptr;
  return peak;
}

void Context::AllocGraph(ggml_cgraph* graph, const char* what) {
  ++alloc_epoch_;
  ggml_backend_sched_reset(sched_);
  if (!ggml_backend_sched_alloc_graph(sched_, graph)) throw Error("OUT_OF_DEVICE_MEMORY", std::string("cannot allocate the ") + what);
  // A graph larger than those measured at creation grew a buffer (none should: this is the
  // check that one did not). Host buffers take memory only when the compute touches them, so
  // this is still in time.
  ggml_backend_t backends[2] = {backend_ ? backend_ : cpu_backend_, cpu_backend_};
  for (size_t i = 0; i < compute_checked_.size(); ++i) {
    const size_t size = ggml_backend_sched_get_buffer_size(sched_, backends[i]);
    if (size <= compute_checked_[i]) continue;
    const bool host = backends[i] == cpu_backend_;
    CheckMemory(host ? nullptr : model_->device, size - compute_checked_[i],
                std::string("the ") + what + "'s compute buffers grew to " + FormatMiB(size) + "; the growth", opts_.memory_limit,
                "Use a smaller batchSize");
    compute_bytes_ += size - compute_checked_[i];
    compute_checked_[i] = size;
  }
}

size_t Context::VisionFloats(int n_tiles, bool project) const {
  const HParams& hp = model_->hp;
  const size_t rows_per_tile = project ? hp.tokens_per_tile() : hp.patches_per_tile();
  return static_cast<size_t>(n_tiles) * rows_per_tile * (project ? hp.llm.n_embd : hp.emb.n_embd);
}

void Context::Vision(const std::vector<const float*>& tiles, bool project, float* out, const CancelFlag& cancel) {
  const HParams& hp = model_->hp;
  const int n_tiles = static_cast<int>(tiles.size());
  const size_t tile_bytes = sizeof(float) * hp.tile_floats();
  const size_t tile_out = VisionFloats(1, project);
  for (int t0 = 0; t0 < n_tiles; t0 += kTilesPerGraph) {
    ThrowIfCancelled(cancel, "the image encoding");
    const int nt = std::min(kTilesPerGraph, n_tiles - t0);
    GraphScope g(graph_mem_);
    VisionGraph v = BuildVisionGraph(g.ctx.get(), g.gf, nt, project);
    AllocGraph(g.gf, "vision graph");
    for (int i = 0; i < nt; ++i) ggml_backend_tensor_set(v.inp, tiles[t0 + i], i * tile_bytes, tile_bytes);
    Compute(g.gf);
    ggml_backend_tensor_get(v.out, out + static_cast<size_t>(t0) * tile_out, 0, ggml_nbytes(v.out));
  }
}

std::vector<float> Context::ShuffleProject(const float* rows, int n_tiles) {
  const HParams& hp = model_->hp;
  const int H = hp.emb.n_embd;
  const int P = hp.patches_per_tile();
  const int T = hp.tokens_per_tile();
  std::vector<float> out(static_cast<size_t>(n_tiles) * T * hp.llm.n_embd);
  for (int t0 = 0; t0 < n_tiles; t0 += kTilesPerGraph) {
    const int nt = std::min(kTilesPerGraph, n_tiles - t0);
    GraphScope g(graph_mem_);
    VisionGraph v = BuildShuffleProjectGraph(g.ctx.get(), g.gf, nt);
    AllocGraph(g.gf, "projection graph");
    ggml_backend_tensor_set(v.inp, rows + static_cast<size_t>(t0) * P * H, 0, ggml_nbytes(v.inp));
    Compute(g.gf);
    ggml_backend_tensor_get(v.out, out.data() + static_cast<size_t>(t0) * T * hp.llm.n_embd, 0, ggml_nbytes(v.out));
  }
  return out;
}

void Context::CheckRoom(bool llm, int n) const {
  if (n_past(llm) + n > n_ctx(llm)) {
    throw Error("CONTEXT_FULL", std::string(llm ? "the language model's" : "the embedding module's") + " context holds " +
                                    std::to_string(n_ctx(llm)) + " positions; " + std::to_string(n_past(llm) + n) + " needed");
  }
}

void Context::CheckIds(const int32_t* ids, int n, int n_image_rows) const {
  const HParams& hp = model_->hp;
  int n_img = 0;
  for (int i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= hp.n_vocab) throw Error("INVALID_ARGUMENT", "token id " + std::to_string(ids[i]) + " is outside the vocabulary");
    n_img += ids[i] == hp.img_context_id;
  }
  if (n_img != n_image_rows) {
    throw Error("INVALID_ARGUMENT", std::to_string(n_img) + " image-context tokens but " + std::to_string(n_image_rows) + " image rows");
  }
}

std::vector<int32_t> Context::WantedRows(const std::vector<int32_t>& out_rows, int n) const {
  std::vector<int32_t> wanted = out_rows;
  if (wanted.empty()) {
    wanted.resize(n);
    for (int i = 0; i < n; ++i) wanted[i] = i;
  }
  for (size_t i = 0; i < wanted.size(); ++i) {
    if (wanted[i] < 0 || wanted[i] >= n || (i > 0 && wanted[i] <= wanted[i - 1])) {
      throw Error("INVALID_ARGUMENT", "logit rows must be increasing indices into the batch");
    }
  }
  return wanted;
}

// `image_rows`: this batch's image rows, consumed in order by its IMG_CONTEXT ids.
void Context::SetEmbedInputs(const EmbedGraph& e, const int32_t* ids, int nb, const float* image_rows, int n_past) {
  ggml_backend_tensor_set(e.tid, ids, 0, ggml_nbytes(e.tid));
  if (e.img != nullptr) {
    std::vector<int32_t> merge(nb);
    int k = 0;
    for (int i = 0; i < nb; ++i) merge[i] = ids[i] == model_->hp.img_context_id ? nb + k++ : i;
    ggml_backend_tensor_set(e.img, image_rows, 0, ggml_nbytes(e.img));
    ggml_backend_tensor_set(e.merge, merge.data(), 0, ggml_nbytes(e.merge));
  }
  SetPositions(e.in, nb, n_past);
}

void Context::SetPositions(const BatchInputs& in, int nb, int n_past) {
  std::vector<int32_t> p(nb);
  std::vector<int64_t> rows(nb);
  for (int i = 0; i < nb; ++i) p[i] = n_past + i, rows[i] = n_past + i;
  ggml_backend_tensor_set(in.pos, p.data(), 0, ggml_nbytes(in.pos));
  ggml_backend_tensor_set(in.rows, rows.data(), 0, ggml_nbytes(in.rows));
  FillCausalMask(mask_, in.n_kv, nb, n_past);
  ggml_backend_tensor_set(in.mask, mask_.data(), 0, ggml_nbytes(in.mask));
}

void Context::SetLlmInputs(const LlmGraph& l, const float* rows, int nb, int n_past, const std::vector<int32_t>& sel) {
  if (l.inp != nullptr) ggml_backend_tensor_set(l.inp, rows, 0, ggml_nbytes(l.inp));
  SetPositions(l.in, nb, n_past);
  if (l.sel) ggml_backend_tensor_set(l.sel, sel.data(), 0, ggml_nbytes(l.sel));
}

namespace {

// The next micro-batch's logit rows among `wanted` (from index w), relative to the batch start.
std::vector<int32_t> BatchRows(const std::vector<int32_t>& wanted, size_t w, int b0, int nb) {
  std::vector<int32_t> sel;
  while (w + sel.size() < wanted.size() && wanted[w + sel.size()] < b0 + nb) sel.push_back(wanted[w + sel.size()] - b0);
  return sel;
}

int CountIn(const int32_t* ids, int n, int32_t id) { return static_cast<int>(std::count(ids, ids + n, id)); }

}  // namespace

std::vector<float> Context::Embed(const int32_t* ids, int n, const float* image_rows, int n_image_rows) {
  if (host_compute_ && n >= kReleaseHeapTokens) ReleaseFreeHeap();
  const int H = model_->hp.emb.n_embd;
  CheckRoom(false, n);
  CheckIds(ids, n, n_image_rows);
  std::vector<float> out(static_cast<size_t>(n) * H);
  int img_used = 0;
  RestoreOnThrow restore(n_past_emb_);
  for (int b0 = 0; b0 < n; b0 += opts_.n_batch) {
    const int nb = std::min(opts_.n_batch, n - b0);
    const int nb_img = CountIn(ids + b0, nb, model_->hp.img_context_id);
    GraphScope g(graph_mem_);
    EmbedGraph e = BuildEmbedGraph(g.ctx.get(), g.gf, nb, nb_img, n_past_emb_);
    AllocGraph(g.gf, "embedding graph");
    SetEmbedInputs(e, ids + b0, nb, image_rows + static_cast<size_t>(img_used) * H, n_past_emb_);
    Compute(g.gf);
    ggml_backend_tensor_get(e.out, out.data() + static_cast<size_t>(b0) * H, 0, ggml_nbytes(e.out));
    img_used += nb_img;
    n_past_emb_ += nb;
  }
  restore.Keep();
  return out;
}

std::vector<float> Context::Llm(const float* rows, int n, const std::vector<int32_t>& out_rows) {
  if (host_compute_ && n >= kReleaseHeapTokens) ReleaseFreeHeap();
  const int H = model_->hp.llm.n_embd;
  const int V = model_->hp.n_vocab;
  CheckRoom(true, n);
  const std::vector<int32_t> wanted = WantedRows(out_rows, n);
  std::vector<float> logits(wanted.size() * static_cast<size_t>(V));
  size_t w = 0;
  RestoreOnThrow restore(n_past_llm_);
  for (int b0 = 0; b0 < n; b0 += opts_.n_batch) {
    const int nb = std::min(opts_.n_batch, n - b0);
    const std::vector<int32_t> sel = BatchRows(wanted, w, b0, nb);
    GraphScope g(graph_mem_);
    LlmGraph l = BuildLlmGraph(g.ctx.get(), g.gf, nb, n_past_llm_, static_cast<int>(sel.size()));
    AllocGraph(g.gf, "LLM graph");
    SetLlmInputs(l, rows + static_cast<size_t>(b0) * H, nb, n_past_llm_, sel);
    Compute(g.gf);
    ReadLogits(l, logits.data() + w * V, nullptr);
    w += sel.size();
    n_past_llm_ += nb;
  }
  restore.Keep();
  return logits;
}

ggml_cgraph* Context::KeptForwardGraph(int nb, int n_out, bool pick) {
  const HParams& hp = model_->hp;
  const int n_kv_emb = KvSpan(false, n_past_emb_ + nb);
  const int n_kv_llm = KvSpan(true, n_past_llm_ + nb);
  // Dynamic NTK moves the rope base with the length: an op parameter, so part of the key.
  const float base_emb = RopeBase(hp.emb, n_past_emb_ + nb);
  const float base_llm = RopeBase(hp.llm, n_past_llm_ + nb);
  // Without flash attention V is written through a view at n_past (BuildAttention), so the
  // graph holds the position itself.
  const int at = opts_.flash_attn ? -1 : n_past_llm_.load();
  KeptForward& k = kept_;
  if (k.ctx && k.epoch == alloc_epoch_ && k.nb == nb && k.n_out == n_out && k.pick == pick && k.n_kv_emb == n_kv_emb &&
      k.n_kv_llm == n_kv_llm && k.base_emb == base_emb && k.base_llm == base_llm && k.at == at &&
      (at < 0 || k.at_emb == n_past_emb_)) {
    return k.gf;
  }
  if (k.ctx) ggml_free(k.ctx);
  k.ctx = nullptr;
  if (!k.mem) k.mem.reset(new uint8_t[graph_mem_.size()]);
  ggml_init_params p{graph_mem_.size(), k.mem.get(), true};
  k.ctx = ggml_init(p);
  if (k.ctx == nullptr) throw Error("INTERNAL", "cannot create the graph context");
  k.gf = ggml_new_graph_custom(k.ctx, kGraphSize, false);
  k.e = BuildEmbedGraph(k.ctx, k.gf, nb, 0, n_past_emb_, false);
  k.l = BuildLlmGraph(k.ctx, k.gf, nb, n_past_llm_, n_out, k.e.out, pick);
  // AllocGraph advances the epoch before it can throw, so a failed allocation leaves no match.
  AllocGraph(k.gf, "forward graph");
  k.epoch = alloc_epoch_;
  k.at = at, k.at_emb = n_past_emb_;
  k.nb = nb, k.n_out = n_out, k.pick = pick, k.n_kv_emb = n_kv_emb, k.n_kv_llm = n_kv_llm, k.base_emb = base_emb, k.base_llm = base_llm;
  return k.gf;
}

std::vector<float> Context::Forward(const int32_t* ids, int n, const float* image_rows, int n_image_rows,
                                    const std::vector<int32_t>& out_rows, float* logits_out, int32_t* picks_out,
                                    const CancelFlag& cancel) {
  if (host_compute_ && n >= kReleaseHeapTokens) ReleaseFreeHeap();
  const HParams& hp = model_->hp;
  const int H = hp.emb.n_embd;
  const int V = hp.n_vocab;
  if (hp.post && n_image_rows > 0) {
    throw Error("INVALID_ARGUMENT", "in \"post\" mode images take the embedding and LLM stages separately");
  }
  if (hp.emb.n_embd != hp.llm.n_embd) throw Error("INVALID_ARGUMENT", "the fused forward needs equal hidden sizes");
  CheckRoom(false, n);
  CheckRoom(true, n);
  CheckIds(ids, n, n_image_rows);
  const std::vector<int32_t> wanted = WantedRows(out_rows, n);
  const bool pick = picks_out != nullptr;
  std::vector<float> logits(logits_out || pick ? 0 : wanted.size() * static_cast<size_t>(V));
  float* const dst = logits_out ? logits_out : logits.data();
  size_t w = 0;
  int img_used = 0;
  RestoreOnThrow restore_emb(n_past_emb_), restore_llm(n_past_llm_);
  for (int b0 = 0; b0 < n; b0 += opts_.n_batch) {
    ThrowIfCancelled(cancel, "the evaluation");
    const int nb = std::min(opts_.n_batch, n - b0);
    const int nb_img = CountIn(ids + b0, nb, hp.img_context_id);
    const std::vector<int32_t> sel = BatchRows(wanted, w, b0, nb);
    const int n_out = static_cast<int>(sel.size());
    std::optional<GraphScope> g;
    EmbedGraph e;
    LlmGraph l;
    ggml_cgraph* gf;
    if (nb_img > 0) {
      g.emplace(graph_mem_);
      gf = g->gf;
      e = BuildEmbedGraph(g->ctx.get(), gf, nb, nb_img, n_past_emb_, false);
      l = BuildLlmGraph(g->ctx.get(), gf, nb, n_past_llm_, n_out, e.out, pick);
      AllocGraph(gf, "forward graph");
    } else {
      gf = KeptForwardGraph(nb, n_out, pick);
      e = kept_.e;
      l = kept_.l;
    }
    SetEmbedInputs(e, ids + b0, nb, image_rows + static_cast<size_t>(img_used) * H, n_past_emb_);
    SetLlmInputs(l, nullptr, nb, n_past_llm_, sel);
    Compute(gf);
    if (pick) {
      ReadLogits(l, nullptr, picks_out + w);
    } else {
      ReadLogits(l, dst + w * V, nullptr);
    }
    w += sel.size();
    img_used += nb_img;
    n_past_emb_ += nb;
    n_past_llm_ += nb;
  }
  restore_emb.Keep();
  restore_llm.Keep();
  return logits;
}

}  // namespace hovle
