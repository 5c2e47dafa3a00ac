#include "reference_graph.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "promise_worker.h"

namespace hovle {
namespace {

constexpr int64_t kEmbd = 64;
constexpr int64_t kHeadDim = 16;
constexpr int64_t kHeads = 6;
constexpr int64_t kOut = kHeadDim * kHeads;
constexpr int64_t kTokens = 7;

struct CtxDeleter {
  void operator()(ggml_context* c) const { ggml_free(c); }
};
struct BackendDeleter {
  void operator()(ggml_backend* b) const { ggml_backend_free(b); }
};
struct BufferDeleter {
  void operator()(ggml_backend_buffer* b) const { ggml_backend_buffer_free(b); }
};
struct GallocrDeleter {
  void operator()(ggml_gallocr* g) const { ggml_gallocr_free(g); }
};

// Deterministic across platforms (no std::uniform_real_distribution, whose output is unspecified).
class Rng {
 public:
  explicit Rng(uint32_t seed) : state_(seed * 2654435761u + 1u) {}
  float Uniform() {  // [-1, 1)
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    return static_cast<float>(state_ >> 8) / 8388608.0f - 1.0f;
  }

 private:
  uint32_t state_;
};

bool ParseWeightType(const std::string& s, ggml_type* out) {
  if (s == "f32") *out = GGML_TYPE_F32;
  else if (s == "f16") *out = GGML_TYPE_F16;
  else if (s == "q8_0") *out = GGML_TYPE_Q8_0;
  else if (s == "q4_0") *out = GGML_TYPE_Q4_0;
  else return false;
  return true;
}

class ReferenceGraphWorker : public PromiseWorker {
 public:
  ReferenceGraphWorker(Napi::Env env, std::string device, ggml_type wtype, uint32_t seed)
      : PromiseWorker(env, "hovle.runReferenceGraph"), device_(std::move(device)), wtype_(wtype), seed_(seed) {}

 protected:
  void Run() override {
    ggml_backend_dev_t dev = ggml_backend_dev_by_name(device_.c_str());
    if (dev == nullptr) throw Error("DEVICE_NOT_FOUND", "no ggml device named '" + device_ + "' in this build");
    std::unique_ptr<ggml_backend, BackendDeleter> backend(ggml_backend_dev_init(dev, nullptr));
    if (!backend) throw Error("BACKEND_INIT_FAILED", "could not initialise device '" + device_ + "'");

    // Host-side inputs.
    Rng rng(seed_);
    std::vector<float> w(kEmbd * kOut), g(kOut), x(kEmbd * kTokens);
    const float wscale = 1.0f / std::sqrt(static_cast<float>(kEmbd));
    for (float& v : w) v = rng.Uniform() * wscale;
    for (float& v : g) v = 1.0f + 0.1f * rng.Uniform();
    for (float& v : x) v = rng.Uniform();
    std::vector<int32_t> pos(kTokens);
    for (int64_t i = 0; i < kTokens; ++i) pos[i] = static_cast<int32_t>(3 * i + 1);

    const size_t wbytes = ggml_row_size(wtype_, kEmbd) * kOut;
    std::vector<uint8_t> wdata(wbytes);
    if (wtype_ == GGML_TYPE_F32) {
      std::memcpy(wdata.data(), w.data(), wbytes);
    } else if (wtype_ == GGML_TYPE_F16) {
      ggml_fp32_to_fp16_row(w.data(), reinterpret_cast<ggml_fp16_t*>(wdata.data()), kEmbd * kOut);
    } else {
      ggml_quantize_chunk(wtype_, w.data(), wdata.data(), 0, kOut, kEmbd, nullptr);
    }

    // Parameters live in their own context/buffer; the graph's intermediates are placed by gallocr.
    ggml_init_params pparams{ggml_tensor_overhead() * 8, nullptr, true};
    std::unique_ptr<ggml_context, CtxDeleter> pctx(ggml_init(pparams));
    ggml_tensor* tw = ggml_new_tensor_2d(pctx.get(), wtype_, kEmbd, kOut);
    ggml_tensor* tg = ggml_new_tensor_1d(pctx.get(), GGML_TYPE_F32, kOut);
    ggml_tensor* tx = ggml_new_tensor_2d(pctx.get(), GGML_TYPE_F32, kEmbd, kTokens);
    ggml_tensor* tp = ggml_new_tensor_1d(pctx.get(), GGML_TYPE_I32, kTokens);
    std::unique_ptr<ggml_backend_buffer, BufferDeleter> pbuf(ggml_backend_alloc_ctx_tensors(pctx.get(), backend.get()));
    if (!pbuf) throw Error("OUT_OF_DEVICE_MEMORY", "could not allocate the reference graph's inputs on " + device_);
    ggml_backend_tensor_set(tw, wdata.data(), 0, wbytes);
    ggml_backend_tensor_set(tg, g.data(), 0, ggml_nbytes(tg));
    ggml_backend_tensor_set(tx, x.data(), 0, ggml_nbytes(tx));
    ggml_backend_tensor_set(tp, pos.data(), 0, ggml_nbytes(tp));

    ggml_init_params cparams{ggml_tensor_overhead() * 32 + ggml_graph_overhead(), nullptr, true};
    std::unique_ptr<ggml_context, CtxDeleter> cctx(ggml_init(cparams));
    ggml_context* c = cctx.get();
    ggml_tensor* y = ggml_mul_mat(c, tw, tx);                                   // [kOut, kTokens]
    ggml_tensor* n = ggml_mul(c, ggml_rms_norm(c, y, 1e-5f), tg);
    ggml_tensor* r = ggml_rope_ext(c, ggml_reshape_3d(c, n, kHeadDim, kHeads, kTokens), tp, nullptr,
                                   kHeadDim, GGML_ROPE_TYPE_NEOX, 0, 10000.0f, 1.0f, 0.0f, 1.0f, 32.0f, 1.0f);
    ggml_tensor* s = ggml_soft_max_ext(c, ggml_reshape_2d(c, r, kOut, kTokens), nullptr, 0.25f, 0.0f);
    ggml_tensor* out = ggml_add(c, s, y);
    ggml_cgraph* gf = ggml_new_graph(c);
    ggml_build_forward_expand(gf, out);

    // ggml aborts on an op a backend cannot run; refuse cleanly instead.
    for (int i = 0; i < ggml_graph_n_nodes(gf); ++i) {
      ggml_tensor* node = ggml_graph_node(gf, i);
      if (!ggml_backend_supports_op(backend.get(), node)) {
        throw Error("OP_UNSUPPORTED", std::string("device '") + device_ + "' cannot run " + ggml_op_desc(node) +
                                          " with " + ggml_type_name(node->src[0] ? node->src[0]->type : node->type));
      }
    }

    std::unique_ptr<ggml_gallocr, GallocrDeleter> galloc(
        ggml_gallocr_new(ggml_backend_get_default_buffer_type(backend.get())));
    if (!ggml_gallocr_alloc_graph(galloc.get(), gf)) {
      throw Error("OUT_OF_DEVICE_MEMORY", "could not allocate the reference graph on " + device_);
    }
    if (ggml_backend_graph_compute(backend.get(), gf) != GGML_STATUS_SUCCESS) {
      throw Error("COMPUTE_FAILED", "the reference graph failed on " + device_);
    }
    result_.resize(ggml_nelements(out));
    ggml_backend_tensor_get(out, result_.data(), 0, ggml_nbytes(out));
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Float32Array arr = Napi::Float32Array::New(env, result_.size());
    std::memcpy(arr.Data(), result_.data(), result_.size() * sizeof(float));
    Napi::Object o = Napi::Object::New(env);
    o.Set("output", arr);
    Napi::Array shape = Napi::Array::New(env, 2);
    shape.Set(0u, Napi::Number::New(env, static_cast<double>(kTokens)));
    shape.Set(1u, Napi::Number::New(env, static_cast<double>(kOut)));
    o.Set("shape", shape);
    return o;
  }

 private:
  std::string device_;
  ggml_type wtype_;
  uint32_t seed_;
  std::vector<float> result_;
};

}  // namespace

Napi::Value RunReferenceGraph(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsNumber()) {
    throw MakeError(env, "INVALID_ARGUMENT", "runReferenceGraph(device: string, weightType: string, seed: number)");
  }
  ggml_type wtype;
  const std::string wname = info[1].As<Napi::String>();
  if (!ParseWeightType(wname, &wtype)) {
    throw MakeError(env, "INVALID_ARGUMENT", "weight type must be f32, f16, q8_0 or q4_0, not '" + wname + "'");
  }
  const double seed = info[2].As<Napi::Number>().DoubleValue();
  if (!(seed >= 0 && seed <= 4294967295.0) || std::floor(seed) != seed) {
    throw MakeError(env, "INVALID_ARGUMENT", "seed must be an integer in [0, 2^32)");
  }
  auto* worker = new ReferenceGraphWorker(env, info[0].As<Napi::String>(), wtype, static_cast<uint32_t>(seed));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace hovle
