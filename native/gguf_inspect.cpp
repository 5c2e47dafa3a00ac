#include "gguf_inspect.h"

#include <string>
#include <vector>

#include "gguf.h"
#include "gguf_check.h"
#include "promise_worker.h"

namespace hovle {
namespace {

struct TensorRow {
  std::string name;
  int type;
  int64_t ne[4];
  double offset;
  double size;
};

class InspectWorker : public PromiseWorker {
 public:
  InspectWorker(Napi::Env env, std::string path) : PromiseWorker(env, "hovle.ggufInspect"), path_(std::move(path)) {}

 protected:
  void Run() override {
    CheckGgufFile(path_);  // before ggml's parser (gguf_check.h says why)
    gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
    gguf_context* ctx = gguf_init_from_file(path_.c_str(), params);
    if (ctx == nullptr) throw Error("GGUF_INVALID", "ggml could not parse " + path_);
    version_ = gguf_get_version(ctx);
    alignment_ = static_cast<double>(gguf_get_alignment(ctx));
    dataOffset_ = static_cast<double>(gguf_get_data_offset(ctx));
    for (int64_t i = 0; i < gguf_get_n_kv(ctx); ++i) {
      keys_.emplace_back(gguf_get_key(ctx, i), gguf_type_name(gguf_get_kv_type(ctx, i)));
    }
    for (int64_t i = 0; i < gguf_get_n_tensors(ctx); ++i) {
      TensorRow r;
      r.name = gguf_get_tensor_name(ctx, i);
      r.type = gguf_get_tensor_type(ctx, i);
      const int64_t* ne = gguf_get_tensor_ne(ctx, i);
      for (int d = 0; d < 4; ++d) r.ne[d] = ne[d];
      r.offset = static_cast<double>(gguf_get_tensor_offset(ctx, i));
      r.size = static_cast<double>(gguf_get_tensor_size(ctx, i));
      tensors_.push_back(std::move(r));
    }
    gguf_free(ctx);
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("version", version_);
    o.Set("alignment", alignment_);
    o.Set("dataOffset", dataOffset_);
    Napi::Array keys = Napi::Array::New(env, keys_.size());
    for (size_t i = 0; i < keys_.size(); ++i) {
      Napi::Object k = Napi::Object::New(env);
      k.Set("key", keys_[i].first);
      k.Set("type", keys_[i].second);
      keys.Set(i, k);
    }
    o.Set("keys", keys);
    Napi::Array tensors = Napi::Array::New(env, tensors_.size());
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const TensorRow& r = tensors_[i];
      Napi::Object t = Napi::Object::New(env);
      t.Set("name", r.name);
      t.Set("type", r.type);
      Napi::Array ne = Napi::Array::New(env, 4);
      for (uint32_t d = 0; d < 4; ++d) ne.Set(d, static_cast<double>(r.ne[d]));
      t.Set("ne", ne);
      t.Set("offset", r.offset);
      t.Set("size", r.size);
      tensors.Set(i, t);
    }
    o.Set("tensors", tensors);
    return o;
  }

 private:
  std::string path_;
  uint32_t version_ = 0;
  double alignment_ = 0;
  double dataOffset_ = 0;
  std::vector<std::pair<std::string, std::string>> keys_;
  std::vector<TensorRow> tensors_;
};

}  // namespace

Napi::Value GgufInspect(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) {
    throw MakeError(info.Env(), "INVALID_ARGUMENT", "ggufInspect(path: string)");
  }
  auto* worker = new InspectWorker(info.Env(), info[0].As<Napi::String>());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace hovle
