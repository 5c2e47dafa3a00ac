// N-API surface of the model runtime: loadModel() -> NativeModel -> NativeContext. All compute
// runs on the model's task thread. Small inputs (ids, row indices) are copied on the JS thread;
// float arrays the size of an image (pixels, image rows, hidden rows: 15-17 MB for 7 tiles) are
// read in place, pinned by a reference until the task settles (see Pins).
#include <napi.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "addon_data.h"
#include "cancel_flag.h"
#include "cpu_threads.h"
#include "decode_run.h"
#include "errors.h"
#include "js_values.h"
#include "memory.h"
#include "model.h"
#include "model_binding.h"
#include "task_thread.h"

namespace hovle {
namespace {

// HOVLE_MEMORY_LIMIT_BYTES, read here on the JS thread (memory.h).
uint64_t MemoryLimit(Napi::Env env) {
  return RethrowAsJs(env, [] { return MemoryLimitFromEnv(); });
}

SegmentHParams ParseSegment(const Napi::Object& o) {
  SegmentHParams s;
  s.n_layer = IntAt(o, "blockCount");
  s.n_embd = IntAt(o, "embeddingLength");
  s.n_ff = IntAt(o, "feedForwardLength");
  s.n_head = IntAt(o, "headCount");
  s.n_head_kv = IntAt(o, "headCountKv");
  s.eps = static_cast<float>(NumberAt(o, "rmsEps"));
  s.rope_base = static_cast<float>(NumberAt(o, "ropeFreqBase"));
  const std::string scaling = o.Get("ropeScalingType").ToString();
  s.rope_scaling = scaling == "linear" ? 1 : scaling == "dynamic" ? 2 : 0;
  s.rope_factor = static_cast<float>(NumberAt(o, "ropeScalingFactor"));
  s.n_ctx_train = IntAt(o, "contextLength");
  return s;
}

HParams ParseHParams(const Napi::Object& o) {
  HParams hp;
  hp.n_vocab = IntAt(o, "vocabSize");
  hp.emb = ParseSegment(o.Get("embedding").As<Napi::Object>());
  hp.llm = ParseSegment(o.Get("llm").As<Napi::Object>());
  Napi::Object v = o.Get("vision").As<Napi::Object>();
  hp.image_size = IntAt(v, "imageSize");
  hp.patch_size = IntAt(v, "patchSize");
  hp.n_channels = IntAt(v, "numChannels");
  hp.downsample = static_cast<float>(NumberAt(v, "downsampleRatio"));
  hp.post = v.Get("pixelShuffleLoc").ToString().Utf8Value() == "post";
  hp.normalize_output = v.Get("normalizeEncoderOutput").ToBoolean();
  hp.img_context_id = IntAt(o, "imageContextId");
  return hp;
}

class LoadWorker : public ThreadTask {
 public:
  LoadWorker(Napi::Env env, std::string path, HParams hp, std::vector<TensorSpec> specs, LoadOptions opts,
             std::shared_ptr<std::atomic<bool>> cancel, Napi::Function onProgress, std::shared_ptr<TaskThread> thread)
      : ThreadTask(env), path_(std::move(path)), hp_(hp), specs_(std::move(specs)),
        opts_(std::move(opts)), cancel_(std::move(cancel)), thread_(std::move(thread)) {
    if (!onProgress.IsEmpty()) {
      progress_ = Napi::ThreadSafeFunction::New(env, onProgress, "hovle.loadProgress", 0, 1);
      has_progress_ = true;
    }
  }
  ~LoadWorker() override {
    if (has_progress_) progress_.Release();
  }

  void Cancel() override { cancel_->store(true); }
  void DropNative() override {
    model_.reset();
    thread_.reset();
  }

 protected:
  void Run() override {
    double last = -1;
    model_ = Model::Load(path_, hp_, specs_, opts_, [&](double done, double total) {
      if (!has_progress_ || (done - last < total / 100 && done < total)) return;
      last = done;
      auto* data = new std::pair<double, double>(done, total);
      progress_.NonBlockingCall(data, [](Napi::Env env, Napi::Function fn, std::pair<double, double>* d) {
        std::unique_ptr<std::pair<double, double>> owned(d);
        // A throw from the user's callback goes back to JS as an uncaught exception, as from any
        // callback; while a worker's environment stops, NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS
        // drops it instead of ending the process.
        try {
          fn.Call({Napi::Number::New(env, d->first), Napi::Number::New(env, d->second)});
        } catch (const Napi::Error& e) {
          e.ThrowAsJavaScriptException();
        }
      });
    }, *cancel_);
    model_->thread = thread_;
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object wrap = AddonData::Get(env).modelCtor.New({});
    ModelWrap::Unwrap(wrap)->model = model_;
    return wrap;
  }

 private:
  std::string path_;
  HParams hp_;
  std::vector<TensorSpec> specs_;
  LoadOptions opts_;
  std::shared_ptr<std::atomic<bool>> cancel_;
  std::shared_ptr<TaskThread> thread_;
  Napi::ThreadSafeFunction progress_;
  bool has_progress_ = false;
  std::shared_ptr<Model> model_;
};

// Float32Arrays a task reads (or, for outputs allocated by the JS layer, writes) in place from the
// task thread. A reference keeps each alive until the task settles; like fs.write's buffer or
// sharp's input Buffer, the array must not be written or transferred meanwhile. The JS layer
// passes arrays it allocated itself, or the caller's image pixels, whose docs say so.
class Pins {
 public:
  template <typename T>
  struct Span {
    T* data = nullptr;
    size_t size = 0;
  };
  using Floats = Span<float>;
  using Ints = Span<int32_t>;
  Floats Add(const Napi::Value& v, const char* what) { return Pin<float>(v, napi_float32_array, what, " must be a Float32Array"); }
  Ints AddInts(const Napi::Value& v, const char* what) { return Pin<int32_t>(v, napi_int32_array, what, " must be an Int32Array"); }

 private:
  template <typename T>
  Span<T> Pin(const Napi::Value& v, napi_typedarray_type type, const char* what, const char* must) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
      throw MakeError(v.Env(), "INVALID_ARGUMENT", std::string(what) + must);
    }
    Napi::TypedArrayOf<T> a = v.As<Napi::TypedArrayOf<T>>();
    refs_.push_back(Napi::Persistent(a.template As<Napi::Object>()));
    return {a.Data(), a.ElementLength()};
  }

  std::vector<Napi::ObjectReference> refs_;
};

std::vector<int32_t> CopyInts(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    throw MakeError(v.Env(), "INVALID_ARGUMENT", std::string(what) + " must be an Int32Array");
  }
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  return RethrowAsJs(v.Env(), [&] { return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength()); });
}

// Runs `fn` on the model's thread with the context locked; resolves with a Float32Array.
class ComputeWorker : public ThreadTask {
 public:
  // `into`: a caller's Float32Array the result is copied into (and returned) instead of a new
  // array; held by a reference until the task settles.
  // `pins`: the arrays `fn` reads or writes in place. `fn` may write its result into `into`
  // itself (a pinned output) and return nothing.
  // `cancel`: the flag `fn` passes to the context, set by an abort or when the environment
  // closes (null when `fn` cannot be cancelled).
  ComputeWorker(Napi::Env env, std::shared_ptr<Context> ctx, std::function<std::vector<float>(Context&)> fn,
                Napi::Value into, Pins pins, std::shared_ptr<std::atomic<bool>> cancel)
      : ThreadTask(env), ctx_(std::move(ctx)), fn_(std::move(fn)), pins_(std::move(pins)), cancel_(std::move(cancel)) {
    if (!into.IsEmpty() && into.IsTypedArray()) into_ = Napi::Persistent(into.As<Napi::Float32Array>());
  }

  void Cancel() override {
    if (cancel_) cancel_->store(true, std::memory_order_relaxed);
  }
  void DropNative() override {
    ctx_.reset();
    fn_ = nullptr;
    std::vector<float>().swap(out_);
  }

 protected:
  void Run() override {
    std::unique_lock<BusyFlag> lock(ctx_->busy, std::try_to_lock);
    if (!lock.owns_lock()) throw Error("BUSY", "this context is already computing; calls must not overlap");
    out_ = fn_(*ctx_);
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Float32Array a = into_.IsEmpty() ? Napi::Float32Array::New(env, out_.size()) : into_.Value();
    // Checked by the JS layer before the call; a buffer detached (transferred) since is not.
    if (a.ElementLength() < out_.size()) throw MakeError(env, "INVALID_ARGUMENT", "the logits buffer is smaller than the logits");
    if (!out_.empty()) std::memcpy(a.Data(), out_.data(), out_.size() * sizeof(float));
    return a;
  }

 private:
  std::shared_ptr<Context> ctx_;
  std::function<std::vector<float>(Context&)> fn_;
  std::vector<float> out_;
  Napi::Reference<Napi::Float32Array> into_;
  Pins pins_;
  std::shared_ptr<std::atomic<bool>> cancel_;
};

class CreateContextWorker : public ThreadTask {
 public:
  CreateContextWorker(Napi::Env env, std::shared_ptr<Model> model, ContextOptions opts, std::shared_ptr<Context> source = nullptr)
      : ThreadTask(env), model_(std::move(model)), opts_(opts), source_(std::move(source)) {}

 protected:
  void DropNative() override {
    ctx_.reset();
    source_.reset();
    model_.reset();
  }

  void Run() override {
    ctx_ = std::make_shared<Context>(model_, opts_);
    if (source_) {
      std::unique_lock<BusyFlag> lock(source_->busy, std::try_to_lock);
      if (!lock.owns_lock()) throw Error("BUSY", "cannot fork a context while it computes");
      ctx_->CopyCacheFrom(*source_);
    }
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object wrap = AddonData::Get(env).contextCtor.New({});
    ContextWrap::Unwrap(wrap)->ctx = ctx_;
    return wrap;
  }

 private:
  std::shared_ptr<Model> model_;
  ContextOptions opts_;
  std::shared_ptr<Context> source_;
  std::shared_ptr<Context> ctx_;
};

}  // namespace

// ------------------------------------------------------------------ NativeModel

Napi::Function ModelWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeModel", {
      InstanceMethod("createContext", &ModelWrap::Guard<&ModelWrap::CreateContext>),
      InstanceMethod("dispose", &ModelWrap::Guard<&ModelWrap::Dispose>),
      InstanceMethod("info", &ModelWrap::Guard<&ModelWrap::Info>),
  });
}

ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {}

std::shared_ptr<Model> ModelWrap::Get(Napi::Env env) {
  if (!model) throw MakeError(env, "DISPOSED", "the model has been disposed");
  return model;
}

Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
  model.reset();  // memory goes when the last context and in-flight call let go of it
  return info.Env().Undefined();
}

Napi::Value ModelWrap::Info(const Napi::CallbackInfo& info) {
  std::shared_ptr<Model> m = Get(info.Env());
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("weightBytes", static_cast<double>(m->weight_bytes));
  o.Set("repackedBytes", static_cast<double>(m->repacked_bytes));
  o.Set("device", ggml_backend_dev_name(m->device));
  int on_device = 0;
  for (bool b : m->layer_on_device) on_device += b;
  o.Set("deviceLayers", on_device);
  return o;
}

Napi::Value ModelWrap::CreateContext(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<Model> m = Get(env);
  Napi::Object o = info[0].As<Napi::Object>();
  ContextOptions opts;
  opts.n_ctx_emb = IntAt(o, "contextEmbedding");
  opts.n_ctx_llm = IntAt(o, "contextLlm");
  opts.n_batch = IntAt(o, "batchSize");
  // Above ggml's thread limit OpenMP would be asked for that many threads per graph.
  opts.threads = IntAt(o, "threads", 1, kMaxComputeThreads);
  opts.flash_attn = o.Get("flashAttention").ToBoolean();
  const std::string kv = o.Get("kvType").ToString();
  if (kv == "f32") opts.kv_type = KvType::F32;
  else if (kv == "f16") opts.kv_type = KvType::F16;
  else if (kv == "q8_0") opts.kv_type = KvType::Q8_0;
  else throw MakeError(env, "INVALID_ARGUMENT", "kvType must be f32, f16 or q8_0");
  opts.memory_limit = MemoryLimit(env);
  auto* w = new CreateContextWorker(env, m, opts);
  return w->Queue(*m->thread);
}

// ------------------------------------------------------------------ NativeContext

Napi::Function ContextWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeContext", {
      InstanceMethod("vision", &ContextWrap::Guard<&ContextWrap::Vision>),
      InstanceMethod("shuffleProject", &ContextWrap::Guard<&ContextWrap::ShuffleProject>),
      InstanceMethod("embed", &ContextWrap::Guard<&ContextWrap::Embed>),
      InstanceMethod("llm", &ContextWrap::Guard<&ContextWrap::Llm>),
      InstanceMethod("forward", &ContextWrap::Guard<&ContextWrap::Forward>),
      InstanceMethod("decode", &ContextWrap::Guard<&ContextWrap::Decode>),
      InstanceMethod("nPast", &ContextWrap::Guard<&ContextWrap::NPast>),
      InstanceMethod("memory", &ContextWrap::Guard<&ContextWrap::Memory>),
      InstanceMethod("truncate", &ContextWrap::Guard<&ContextWrap::Truncate>),
      InstanceMethod("fork", &ContextWrap::Guard<&ContextWrap::Fork>),
      InstanceMethod("dispose", &ContextWrap::Guard<&ContextWrap::Dispose>),
  });
}

ContextWrap::ContextWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ContextWrap>(info) {}

std::shared_ptr<Context> ContextWrap::Get(Napi::Env env) {
  if (!ctx) throw MakeError(env, "DISPOSED", "the context has been disposed");
  return ctx;
}

Napi::Value ContextWrap::Dispose(const Napi::CallbackInfo& info) {
  ctx.reset();
  return info.Env().Undefined();
}

Napi::Value ContextWrap::Fork(const Napi::CallbackInfo& info) {
  std::shared_ptr<Context> c = Get(info.Env());
  ContextOptions opts = c->options();
  opts.memory_limit = MemoryLimit(info.Env());
  auto* w = new CreateContextWorker(info.Env(), c->model(), opts, c);
  return w->Queue(c->task_thread());
}

Napi::Value ContextWrap::NPast(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Get(info.Env())->n_past(info[0].ToString().Utf8Value() == "llm"));
}

// The caches are allocated whole at creation and the compute buffers sized for the largest
// graphs; compute_bytes() is atomic, as a running task would change it if a graph grew them.
Napi::Value ContextWrap::Memory(const Napi::CallbackInfo& info) {
  auto c = Get(info.Env());
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("kvBytes", Napi::Number::New(info.Env(), static_cast<double>(c->kv_bytes())));
  o.Set("computeBytes", Napi::Number::New(info.Env(), static_cast<double>(c->compute_bytes())));
  return o;
}

Napi::Value ContextWrap::Truncate(const Napi::CallbackInfo& info) {
  std::shared_ptr<Context> c = Get(info.Env());
  std::unique_lock<BusyFlag> lock(c->busy, std::try_to_lock);
  if (!lock.owns_lock()) throw MakeError(info.Env(), "BUSY", "cannot truncate while the context is computing");
  const bool llm = info[0].ToString().Utf8Value() == "llm";
  // Not Int32Value, which would wrap 2^32 + 3 to 3 and NaN to 0.
  const int n = static_cast<int>(IntArg(info, 1, "the position count", 0, INT32_MAX));
  c->Truncate(llm, n);  // a hovle::Error (out of range) reaches JS through Guard
  return info.Env().Undefined();
}

static Napi::Value Queue(Napi::Env env, std::shared_ptr<Context> c, std::function<std::vector<float>(Context&)> fn,
                         Napi::Value into = Napi::Value(), Pins pins = Pins(), std::shared_ptr<std::atomic<bool>> cancel = nullptr) {
  TaskThread& thread = c->task_thread();
  auto* w = new ComputeWorker(env, std::move(c), std::move(fn), into, std::move(pins), std::move(cancel));
  return w->Queue(thread);
}


// Whether optional argument `i` was given (undefined and null mean it was not).
static bool Given(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && !info[i].IsNull() && !info[i].IsUndefined();
}

// The call's cancel flag: the caller's CancelFlag (argument i), else one of its own, which only
// a closing environment sets.
static std::shared_ptr<std::atomic<bool>> CallCancelFlag(const Napi::CallbackInfo& info, size_t i) {
  std::shared_ptr<std::atomic<bool>> flag = CancelFlagWrap::From(info.Env(), Given(info, i) ? info[i] : Napi::Value());
  return flag ? flag : std::make_shared<std::atomic<bool>>(false);
}

// How many rows of the context's hidden size `floats` floats make; throws when not whole rows.
static int WholeRows(const Context& ctx, size_t floats, const char* what) {
  const size_t H = ctx.hidden();
  if (floats % H != 0 || floats / H > INT32_MAX) throw Error("INVALID_ARGUMENT", std::string(what) + " must be a whole number of hidden-size rows");
  return static_cast<int>(floats / H);
}

// The optional Float32Array argument `i` that logits are written into.
static Napi::Value Into(const Napi::CallbackInfo& info, size_t i) {
  if (!Given(info, i)) return Napi::Value();
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw MakeError(info.Env(), "INVALID_ARGUMENT", "the logits buffer must be a Float32Array");
  }
  return info[i];
}

// vision(parts, tiles, project, into): `parts` the images' pixel arrays (whole tiles each),
// `into` the output the JS layer allocated (VisionFloats of the tiles).
Napi::Value ContextWrap::Vision(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto c = Get(env);
  if (!info[0].IsArray()) throw MakeError(env, "INVALID_ARGUMENT", "vision() takes an array of pixel arrays");
  const size_t tile_px = c->model()->hp.tile_floats();
  Pins pins;
  auto tiles = std::make_shared<std::vector<const float*>>();
  Napi::Array parts = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < parts.Length(); ++i) {
    const Pins::Floats px = pins.Add(parts.Get(i), "pixels");
    if (px.size == 0 || px.size % tile_px != 0) throw MakeError(env, "INVALID_ARGUMENT", "each pixel array must hold whole tiles");
    for (size_t t = 0; t < px.size / tile_px; ++t) tiles->push_back(px.data + t * tile_px);
  }
  const double n_tiles = info[1].ToNumber().DoubleValue();
  if (tiles->empty() || n_tiles != static_cast<double>(tiles->size())) {
    throw MakeError(env, "INVALID_ARGUMENT", "the pixel arrays hold " + std::to_string(tiles->size()) + " tiles, not the count given");
  }
  const bool project = info[2].ToBoolean();
  const Pins::Floats out = pins.Add(info[3], "the vision output");
  if (out.size != c->VisionFloats(static_cast<int>(tiles->size()), project)) {
    throw MakeError(env, "INVALID_ARGUMENT", "the vision output must hold exactly the tiles' rows");
  }
  std::shared_ptr<std::atomic<bool>> cancel = CallCancelFlag(info, 4);
  return Queue(env, c, [tiles, project, out, cancel](Context& ctx) {
    ctx.Vision(*tiles, project, out.data, cancel);
    return std::vector<float>();
  }, info[3], std::move(pins), cancel);
}

Napi::Value ContextWrap::ShuffleProject(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto c = Get(env);
  Pins pins;
  const Pins::Floats rows = pins.Add(info[0], "rows");
  const int tiles = info[1].As<Napi::Number>().Int32Value();
  // Read in place for `tiles` tiles: a shorter array would be read past its end.
  const HParams& hp = c->model()->hp;
  if (tiles < 1 || rows.size != static_cast<size_t>(tiles) * hp.patches_per_tile() * hp.emb.n_embd) {
    throw MakeError(env, "INVALID_ARGUMENT", "the rows must be exactly the tiles' patch rows");
  }
  return Queue(env, c, [rows, tiles](Context& ctx) { return ctx.ShuffleProject(rows.data, tiles); }, Napi::Value(), std::move(pins));
}

Napi::Value ContextWrap::Embed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto c = Get(env);
  auto ids = std::make_shared<std::vector<int32_t>>(CopyInts(info[0], "ids"));
  Pins pins;
  const Pins::Floats img = Given(info, 1) ? pins.Add(info[1], "imageRows") : Pins::Floats();
  return Queue(env, c, [ids, img](Context& ctx) {
    const int n_img = WholeRows(ctx, img.size, "image rows");
    return ctx.Embed(ids->data(), static_cast<int>(ids->size()), n_img ? img.data : nullptr, n_img);
  }, Napi::Value(), std::move(pins));
}

Napi::Value ContextWrap::Llm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto c = Get(env);
  Pins pins;
  const Pins::Floats rows = pins.Add(info[0], "rows");
  auto out = std::make_shared<std::vector<int32_t>>();
  if (Given(info, 1)) *out = CopyInts(info[1], "outputRows");
  return Queue(env, c, [rows, out](Context& ctx) {
    return ctx.Llm(rows.data, WholeRows(ctx, rows.size, "rows"), *out);
  }, Into(info, 2), std::move(pins));
}

Napi::Value ContextWrap::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto c = Get(env);
  auto ids = std::make_shared<std::vector<int32_t>>(CopyInts(info[0], "ids"));
  Pins pins;
  const Pins::Floats img = Given(info, 1) ? pins.Add(info[1], "imageRows") : Pins::Floats();
  auto out = std::make_shared<std::vector<int32_t>>();
  if (Given(info, 2)) *out = CopyInts(info[2], "outputRows");
  // A caller's logits buffer is written in place (pinned, like the image inputs): a decode step
  // on a GPU takes ~2 ms, and a 370 KB vector allocated, filled and copied again is part of that.
  const Napi::Value into = Into(info, 3);
  const Pins::Floats dst = into.IsEmpty() ? Pins::Floats() : pins.Add(into, "the logits buffer");
  const size_t rows = out->empty() ? ids->size() : out->size();
  if (dst.data != nullptr && dst.size < rows * static_cast<size_t>(c->model()->hp.n_vocab)) {
    throw MakeError(env, "INVALID_ARGUMENT", "the logits buffer is smaller than the logits");
  }
  // `picks`: an Int32Array that gets each row's argmax instead of the logits (greedy decoding).
  const Pins::Ints picks = Given(info, 4) ? pins.AddInts(info[4], "the picks buffer") : Pins::Ints();
  if (picks.data != nullptr && dst.data != nullptr) throw MakeError(env, "INVALID_ARGUMENT", "picks and a logits buffer exclude each other");
  if (picks.data != nullptr && picks.size < rows) throw MakeError(env, "INVALID_ARGUMENT", "the picks buffer is smaller than the rows");
  std::shared_ptr<std::atomic<bool>> cancel = CallCancelFlag(info, 5);
  return Queue(env, c, [ids, img, out, dst, picks, cancel](Context& ctx) {
    const int n_img = WholeRows(ctx, img.size, "image rows");
    return ctx.Forward(ids->data(), static_cast<int>(ids->size()), n_img ? img.data : nullptr, n_img, *out, dst.data, picks.data, cancel);
  }, into, std::move(pins), cancel);
}

// decode(first, maxSteps, stopIds, onPick[, sampler, history]) -> {promise, stop} (decode_run.h).
// The ids are checked here, before the run, as forward() checks its ids on the model's thread;
// each pick is an id of the vocabulary (an argmax, or a sampler's draw over it), so only `first`
// can be out of range.
Napi::Value ContextWrap::Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto c = Get(env);
  const int n_vocab = c->model()->hp.n_vocab;
  const auto first = static_cast<int32_t>(IntArg(info, 0, "the first token", 0, n_vocab - 1));
  const auto max_steps = static_cast<int>(IntArg(info, 1, "maxSteps", 1, INT32_MAX));
  std::vector<int32_t> stop_ids = CopyInts(info[2], "stopIds");
  if (!info[3].IsFunction()) throw MakeError(env, "INVALID_ARGUMENT", "onPick must be a function");
  std::unique_ptr<TokenSampler> sampler;
  std::vector<int32_t> history;
  if (Given(info, 4)) {
    TokenSampler& s = SamplerWrap::From(env, info[4])->sampler();
    if (s.n_vocab() != n_vocab) throw MakeError(env, "INVALID_ARGUMENT", "the sampler was made for another vocabulary size");
    sampler = RethrowAsJs(env, [&] { return std::make_unique<TokenSampler>(s); });
    if (Given(info, 5)) history = CopyInts(info[5], "history");
  }
  return QueueDecodeRun(env, c, first, max_steps, std::move(stop_ids),
                        info[3].As<Napi::Function>(), std::move(sampler), std::move(history));
}

// ------------------------------------------------------------------ loadModel

Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject()) {
    throw MakeError(env, "INVALID_ARGUMENT", "loadModel(path, spec, onProgress?)");
  }
  Napi::Object spec = info[1].As<Napi::Object>();
  HParams hp;
  std::vector<TensorSpec> specs;
  LoadOptions opts;
  {
    hp = ParseHParams(spec.Get("hparams").As<Napi::Object>());
    Napi::Array tensors = spec.Get("tensors").As<Napi::Array>();
    for (uint32_t i = 0; i < tensors.Length(); ++i) {
      Napi::Object t = tensors.Get(i).As<Napi::Object>();
      TensorSpec s;
      s.name = t.Get("name").ToString();
      s.role = t.Get("role").ToString();
      s.block = t.Get("block").IsNumber() ? t.Get("block").As<Napi::Number>().Int32Value() : -1;
      Napi::Array dims = t.Get("dims").As<Napi::Array>();
      if (dims.Length() < 1 || dims.Length() > GGML_MAX_DIMS) throw MakeError(env, "INVALID_ARGUMENT", "bad dims for " + s.name);
      for (uint32_t d = 0; d < dims.Length(); ++d) {
        const double v = dims.Get(d).As<Napi::Number>().DoubleValue();
        if (!(v >= 0 && v <= 9007199254740991.0) || std::floor(v) != v) throw MakeError(env, "INVALID_ARGUMENT", "bad dims for " + s.name);
        s.dims.push_back(static_cast<int64_t>(v));
      }
      specs.push_back(std::move(s));
    }
    opts.device = spec.Get("device").ToString();
    opts.mmap = spec.Get("mmap").ToBoolean();
    opts.prefetch = spec.Get("prefetch").ToBoolean();
    // -1: all; Int32Value would turn 2^32 into 0 layers.
    opts.gpu_layers = spec.Get("gpuLayers").IsNumber() ? IntAt(spec, "gpuLayers", -1, INT_MAX) : -1;
    opts.vision_on_device = spec.Get("visionOnDevice").ToBoolean();
    opts.repack = spec.Get("repack").ToBoolean();
    opts.memory_limit = MemoryLimit(env);
  }
  auto cancel = std::make_shared<std::atomic<bool>>(false);
  Napi::Function onProgress = info.Length() > 2 && info[2].IsFunction() ? info[2].As<Napi::Function>() : Napi::Function();
  auto thread = std::make_shared<TaskThread>();
  auto* w = new LoadWorker(env, info[0].As<Napi::String>(), hp, std::move(specs), opts, cancel, onProgress, thread);
  Napi::Object result = Napi::Object::New(env);
  result.Set("promise", w->Queue(*thread));
  result.Set("cancel", Napi::Function::New(env, [cancel](const Napi::CallbackInfo& i) {
    cancel->store(true);
    return i.Env().Undefined();
  }));
  return result;
}

void RegisterModelClasses(Napi::Env env, Napi::Object exports) {
  AddonData& data = AddonData::Get(env);
  Napi::Function model = ModelWrap::Define(env);
  Napi::Function context = ContextWrap::Define(env);
  data.modelCtor = Napi::Persistent(model);
  data.contextCtor = Napi::Persistent(context);
  exports.Set("loadModel", Napi::Function::New(env, Guarded<LoadModel>, "loadModel"));
}

}  // namespace hovle
