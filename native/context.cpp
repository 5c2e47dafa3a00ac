// Graph builders (one function per block) and the stage runners of a Context.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <thread>

#include "errors.h"
#include "ggml-alloc.h"
#include "ggml-cpu.h"
#include "model.h"

namespace hovle {
namespace {

constexpr int kGraphSize = 8192;
// Tiles per vision graph: bounds the compute buffer (~12 MB of activations per tile at H=2048).
constexpr int kTilesPerGraph = 4;

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

}  // namespace

Context::Context(std::shared_ptr<Model> model, const ContextOptions& opts) : model_(std::move(model)), opts_(opts) {
  const HParams& hp = model_->hp;
  if (opts_.n_ctx_emb <= 0 || opts_.n_ctx_llm <= 0 || opts_.n_batch <= 0) {
    throw Error("INVALID_ARGUMENT", "context sizes and batch size must be positive");
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
  cpu_backend_ = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
  if (cpu_backend_ == nullptr) throw Error("BACKEND_INIT_FAILED", "cannot initialise the CPU backend");
  const int threads = opts_.threads > 0 ? opts_.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ggml_backend_cpu_set_n_threads(cpu_backend_, threads);
  if (ggml_backend_dev_type(model_->device) != GGML_BACKEND_DEVICE_TYPE_CPU) {
    backend_ = ggml_backend_dev_init(model_->device, nullptr);
    if (backend_ == nullptr) {
      ggml_backend_free(cpu_backend_);
      throw Error("BACKEND_INIT_FAILED", std::string("cannot initialise ") + ggml_backend_dev_name(model_->device));
    }
  }

  // One cache context per device: each layer's K/V live where its weights are.
  const int n_layers = hp.emb.n_layer + hp.llm.n_layer;
  ggml_init_params kp{ggml_tensor_overhead() * (2 * n_layers + 4), nullptr, true};
  ggml_context* kv_cpu = ggml_init(kp);
  ggml_context* kv_dev = ggml_init(kp);
  kv_ctx_ = {kv_cpu, kv_dev};
  const ggml_type kt = KvGgmlType(opts_.kv_type);
  for (bool llm : {false, true}) {
    const SegmentHParams& s = model_->seg(llm);
    Kv& kv = llm ? kv_llm_ : kv_emb_;
    const int n_ctx = llm ? opts_.n_ctx_llm : opts_.n_ctx_emb;
    for (int il = 0; il < s.n_layer; ++il) {
      ggml_context* c = model_->layer_on_device[model_->first_block(llm) + il] ? kv_dev : kv_cpu;
      // Token-major rows of head_dim * kv_heads, as llama.cpp lays its cache out: appending a
      // batch is one contiguous copy. Without flash attention V is kept transposed
      // ([n_ctx, head_dim * kv_heads]) so attention multiplies contiguous rows.
      const int64_t row = static_cast<int64_t>(s.head_dim()) * s.n_head_kv;
      kv.k.push_back(ggml_new_tensor_2d(c, kt, row, n_ctx));
      kv.v.push_back(opts_.flash_attn ? ggml_new_tensor_2d(c, kt, row, n_ctx) : ggml_new_tensor_2d(c, kt, n_ctx, row));
    }
  }
  for (auto [c, buft] : {std::make_pair(kv_cpu, ggml_backend_cpu_buffer_type()),
                         std::make_pair(kv_dev, ggml_backend_dev_buffer_type(model_->device))}) {
    if (ggml_get_first_tensor(c) == nullptr) continue;
    ggml_backend_buffer_t b = ggml_backend_alloc_ctx_tensors_from_buft(c, buft);
    if (b == nullptr) {
      for (ggml_backend_buffer_t x : kv_buf_) ggml_backend_buffer_free(x);
      for (ggml_context* x : kv_ctx_) ggml_free(x);
      if (backend_) ggml_backend_free(backend_);
      ggml_backend_free(cpu_backend_);
      throw Error("OUT_OF_DEVICE_MEMORY", "cannot allocate the KV cache");
    }
    ggml_backend_buffer_clear(b, 0);
    kv_buf_.push_back(b);
  }

  ggml_backend_t backends[2];
  int n = 0;
  if (backend_) backends[n++] = backend_;
  backends[n++] = cpu_backend_;
  sched_ = ggml_backend_sched_new(backends, nullptr, n, kGraphSize, false, true);
  graph_mem_.resize(ggml_tensor_overhead() * kGraphSize + ggml_graph_overhead_custom(kGraphSize, false));
}

Context::~Context() {
  if (sched_) ggml_backend_sched_free(sched_);
  for (ggml_backend_buffer_t b : kv_buf_) ggml_backend_buffer_free(b);
  for (ggml_context* c : kv_ctx_) ggml_free(c);
  if (backend_) ggml_backend_free(backend_);
  if (cpu_backend_) ggml_backend_free(cpu_backend_);
}

void Context::Truncate(bool llm, int n) {
  int& past = llm ? n_past_llm_ : n_past_emb_;
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
  n_past_emb_ = other.n_past_emb_;
  n_past_llm_ = other.n_past_llm_;
}

float Context::RopeBase(const SegmentHParams& s, int n_total) const {
  if (s.rope_scaling != 2 || s.n_ctx_train <= 0 || n_total <= s.n_ctx_train) return s.rope_base;
  // Dynamic NTK (HF): the base grows with the sequence length past the trained context.
  const double hd = s.head_dim();
  const double f = s.rope_factor;
  return static_cast<float>(s.rope_base * std::pow(f * n_total / s.n_ctx_train - (f - 1.0), hd / (hd - 2.0)));
}

ggml_tensor* Context::BuildAttention(ggml_context* ctx, ggml_tensor* x, const LayerWeights& w, const SegmentHParams& s,
                                     const Kv& kv, int layer, int n_tokens, int n_past, int n_ctx, ggml_tensor* pos,
                                     ggml_tensor* mask) {
  (void)n_ctx;
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
  // Append this batch to the cache. The copies are expanded into the graph before anything
  // reads the cache, so they run first.
  ggml_build_forward_expand(gf, ggml_cpy(ctx, ggml_reshape_2d(ctx, k, row, n_tokens),
                                         ggml_view_2d(ctx, kc, row, n_tokens, kc->nb[1], n_past * kc->nb[1])));
  if (opts_.flash_attn) {
    ggml_build_forward_expand(gf, ggml_cpy(ctx, ggml_reshape_2d(ctx, v, row, n_tokens),
                                           ggml_view_2d(ctx, vc, row, n_tokens, vc->nb[1], n_past * vc->nb[1])));
  } else {
    ggml_tensor* vdst = ggml_view_2d(ctx, vc, n_tokens, row, vc->nb[1], n_past * ggml_element_size(vc));
    ggml_build_forward_expand(gf, ggml_cpy(ctx, ggml_transpose(ctx, ggml_reshape_2d(ctx, v, row, n_tokens)), vdst));
  }

  const int n_kv = n_past + n_tokens;
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
                                   ggml_tensor* pos, ggml_tensor* mask) {
  const SegmentHParams& s = model_->seg(llm);
  const Kv& kv = llm ? kv_llm_ : kv_emb_;
  for (int il = 0; il < s.n_layer; ++il) {
    const LayerWeights& w = model_->layers[model_->first_block(llm) + il];
    ggml_tensor* x = ggml_mul(ctx, ggml_rms_norm(ctx, cur, s.eps), w.attn_norm);
    cur = ggml_add(ctx, cur, BuildAttention(ctx, x, w, s, kv, il, n_tokens, n_past, n_ctx(llm), pos, mask));
    x = ggml_mul(ctx, ggml_rms_norm(ctx, cur, s.eps), w.ffn_norm);
    ggml_tensor* ffn = ggml_swiglu_split(ctx, ggml_mul_mat(ctx, w.ffn_gate, x), ggml_mul_mat(ctx, w.ffn_up, x));
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
  if (ggml_backend_sched_graph_compute(sched_, graph) != GGML_STATUS_SUCCESS) {
    throw Error("COMPUTE_FAILED", "the backend failed to compute the graph");
  }
}

namespace {

// A graph being built in the context's scratch memory, allocated by the scheduler.
struct GraphScope {
  std::unique_ptr<ggml_context, CtxFree> ctx;
  ggml_cgraph* gf;
  GraphScope(std::vector<uint8_t>& mem) {
    ggml_init_params p{mem.size(), mem.data(), true};
    ctx.reset(ggml_init(p));
    gf = ggml_new_graph_custom(ctx.get(), kGraphSize, false);
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

std::vector<float> Context::Vision(const float* pixels, int n_tiles, bool project) {
  const HParams& hp = model_->hp;
  const int H = hp.emb.n_embd;
  const int P = hp.patches_per_tile();
  const int rows_per_tile = project ? hp.tokens_per_tile() : P;
  const int out_dim = project ? hp.llm.n_embd : H;
  const size_t tile_px = static_cast<size_t>(hp.n_channels) * hp.image_size * hp.image_size;
  std::vector<float> out(static_cast<size_t>(n_tiles) * rows_per_tile * out_dim);
  for (int t0 = 0; t0 < n_tiles; t0 += kTilesPerGraph) {
    const int nt = std::min(kTilesPerGraph, n_tiles - t0);
    GraphScope g(graph_mem_);
    ggml_context* ctx = g.ctx.get();
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
    ggml_build_forward_expand(g.gf, cur);
    ggml_backend_sched_reset(sched_);
    if (!ggml_backend_sched_alloc_graph(sched_, g.gf)) throw Error("OUT_OF_DEVICE_MEMORY", "cannot allocate the vision graph");
    ggml_backend_tensor_set(inp, pixels + t0 * tile_px, 0, ggml_nbytes(inp));
    Compute(g.gf);
    ggml_backend_tensor_get(cur, out.data() + static_cast<size_t>(t0) * rows_per_tile * out_dim, 0, ggml_nbytes(cur));
  }
  return out;
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
    ggml_context* ctx = g.ctx.get();
    ggml_tensor* inp = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, H, P * nt);
    ggml_set_input(inp);
    ggml_tensor* cur = BuildShuffleProject(ctx, inp, nt);
    ggml_set_output(cur);
    ggml_build_forward_expand(g.gf, cur);
    ggml_backend_sched_reset(sched_);
    if (!ggml_backend_sched_alloc_graph(sched_, g.gf)) throw Error("OUT_OF_DEVICE_MEMORY", "cannot allocate the projection graph");
    ggml_backend_tensor_set(inp, rows + static_cast<size_t>(t0) * P * H, 0, ggml_nbytes(inp));
    Compute(g.gf);
    ggml_backend_tensor_get(cur, out.data() + static_cast<size_t>(t0) * T * hp.llm.n_embd, 0, ggml_nbytes(cur));
  }
  return out;
}

std::vector<float> Context::Embed(const int32_t* ids, int n, const float* image_rows, int n_image_rows) {
  const HParams& hp = model_->hp;
  const int H = hp.emb.n_embd;
  if (n_past_emb_ + n > opts_.n_ctx_emb) {
    throw Error("CONTEXT_FULL", "the embedding module's context holds " + std::to_string(opts_.n_ctx_emb) +
                                    " positions; " + std::to_string(n_past_emb_ + n) + " needed");
  }
  int n_ctx_tokens = 0;
  for (int i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= hp.n_vocab) throw Error("INVALID_ARGUMENT", "token id " + std::to_string(ids[i]) + " is outside the vocabulary");
    n_ctx_tokens += ids[i] == hp.img_context_id;
  }
  if (n_ctx_tokens != n_image_rows) {
    throw Error("INVALID_ARGUMENT", std::to_string(n_ctx_tokens) + " image-context tokens but " +
                                        std::to_string(n_image_rows) + " image rows");
  }
  std::vector<float> out(static_cast<size_t>(n) * H);
  std::vector<ggml_fp16_t> mask;
  int img_used = 0;
  for (int b0 = 0; b0 < n; b0 += opts_.n_batch) {
    const int nb = std::min(opts_.n_batch, n - b0);
    int nb_img = 0;
    std::vector<int32_t> merge(nb);
    for (int i = 0; i < nb; ++i) merge[i] = ids[b0 + i] == hp.img_context_id ? nb + nb_img++ : i;
    const int n_past = n_past_emb_;
    const int n_kv = n_past + nb;
    GraphScope g(graph_mem_);
    ggml_context* ctx = g.ctx.get();
    pending_graph_ = g.gf;
    ggml_tensor* tid = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, nb);
    ggml_set_input(tid);
    ggml_tensor* cur = ggml_get_rows(ctx, model_->tok_embd, tid);
    ggml_tensor* img = nullptr;
    ggml_tensor* tmerge = nullptr;
    if (nb_img > 0) {
      img = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, H, nb_img);
      ggml_set_input(img);
      tmerge = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, nb);
      ggml_set_input(tmerge);
      cur = ggml_get_rows(ctx, ggml_concat(ctx, cur, img, 1), tmerge);
    }
    ggml_tensor* pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, nb);
    ggml_set_input(pos);
    ggml_tensor* tmask = ggml_new_tensor_2d(ctx, GGML_TYPE_F16, n_kv, nb);
    ggml_set_input(tmask);
    cur = BuildSegment(ctx, cur, false, nb, n_past, pos, tmask);
    if (hp.normalize_output) cur = ggml_l2_norm(ctx, cur, 1e-12f);
    ggml_set_output(cur);
    ggml_build_forward_expand(g.gf, cur);
    ggml_backend_sched_reset(sched_);
    if (!ggml_backend_sched_alloc_graph(sched_, g.gf)) throw Error("OUT_OF_DEVICE_MEMORY", "cannot allocate the embedding graph");
    ggml_backend_tensor_set(tid, ids + b0, 0, ggml_nbytes(tid));
    if (nb_img > 0) {
      ggml_backend_tensor_set(img, image_rows + static_cast<size_t>(img_used) * H, 0, ggml_nbytes(img));
      ggml_backend_tensor_set(tmerge, merge.data(), 0, ggml_nbytes(tmerge));
    }
    std::vector<int32_t> p(nb);
    for (int i = 0; i < nb; ++i) p[i] = n_past + i;
    ggml_backend_tensor_set(pos, p.data(), 0, ggml_nbytes(pos));
    FillCausalMask(mask, n_kv, nb, n_past);
    ggml_backend_tensor_set(tmask, mask.data(), 0, ggml_nbytes(tmask));
    Compute(g.gf);
    ggml_backend_tensor_get(cur, out.data() + static_cast<size_t>(b0) * H, 0, ggml_nbytes(cur));
    img_used += nb_img;
    n_past_emb_ += nb;
  }
  return out;
}

std::vector<float> Context::Llm(const float* rows, int n, const std::vector<int32_t>& out_rows) {
  const HParams& hp = model_->hp;
  const int H = hp.llm.n_embd;
  const int V = hp.n_vocab;
  if (n_past_llm_ + n > opts_.n_ctx_llm) {
    throw Error("CONTEXT_FULL", "the language model's context holds " + std::to_string(opts_.n_ctx_llm) +
                                    " positions; " + std::to_string(n_past_llm_ + n) + " needed");
  }
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
  std::vector<float> logits(wanted.size() * static_cast<size_t>(V));
  std::vector<ggml_fp16_t> mask;
  size_t w = 0;
  for (int b0 = 0; b0 < n; b0 += opts_.n_batch) {
    const int nb = std::min(opts_.n_batch, n - b0);
    std::vector<int32_t> sel;
    while (w + sel.size() < wanted.size() && wanted[w + sel.size()] < b0 + nb) sel.push_back(wanted[w + sel.size()] - b0);
    const int n_past = n_past_llm_;
    const int n_kv = n_past + nb;
    GraphScope g(graph_mem_);
    ggml_context* ctx = g.ctx.get();
    pending_graph_ = g.gf;
    ggml_tensor* inp = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, H, nb);
    ggml_set_input(inp);
    ggml_tensor* pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, nb);
    ggml_set_input(pos);
    ggml_tensor* tmask = ggml_new_tensor_2d(ctx, GGML_TYPE_F16, n_kv, nb);
    ggml_set_input(tmask);
    ggml_tensor* cur = BuildSegment(ctx, inp, true, nb, n_past, pos, tmask);
    ggml_tensor* tsel = nullptr;
    ggml_tensor* out = nullptr;
    if (!sel.empty()) {
      tsel = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, static_cast<int64_t>(sel.size()));
      ggml_set_input(tsel);
      cur = ggml_get_rows(ctx, cur, tsel);
      cur = ggml_mul(ctx, ggml_rms_norm(ctx, cur, hp.llm.eps), model_->out_norm);
      out = ggml_mul_mat(ctx, model_->output, cur);
      ggml_set_output(out);
      ggml_build_forward_expand(g.gf, out);
    } else {
      // No logits wanted from this batch, but its layers must still fill the KV cache.
      ggml_build_forward_expand(g.gf, cur);
    }
    ggml_backend_sched_reset(sched_);
    if (!ggml_backend_sched_alloc_graph(sched_, g.gf)) throw Error("OUT_OF_DEVICE_MEMORY", "cannot allocate the LLM graph");
    ggml_backend_tensor_set(inp, rows + static_cast<size_t>(b0) * H, 0, ggml_nbytes(inp));
    std::vector<int32_t> p(nb);
    for (int i = 0; i < nb; ++i) p[i] = n_past + i;
    ggml_backend_tensor_set(pos, p.data(), 0, ggml_nbytes(pos));
    FillCausalMask(mask, n_kv, nb, n_past);
    ggml_backend_tensor_set(tmask, mask.data(), 0, ggml_nbytes(tmask));
    if (tsel) ggml_backend_tensor_set(tsel, sel.data(), 0, ggml_nbytes(tsel));
    Compute(g.gf);
    if (out) ggml_backend_tensor_get(out, logits.data() + w * V, 0, ggml_nbytes(out));
    w += sel.size();
    n_past_llm_ += nb;
  }
  return logits;
}

}  // namespace hovle
