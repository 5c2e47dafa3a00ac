// Entry point of hovle.node. The JS facade (src/native/) is the only caller: it validates
// arguments first, so the checks here are the last line of defence, not the user-facing ones.
#include <napi.h>

#include "addon_data.h"
#include "build_info.h"
#include "cpu_threads.h"
#include "errors.h"
#include "ggml_log.h"
#include "ggml_types.h"
#include "gguf_inspect.h"
#include "image.h"
#include "memory.h"
#include "model_binding.h"
#include "reference_graph.h"
#include "sampler.h"
#include "system_info.h"
#include "tokenizer.h"
#include "tensor_convert.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new hovle::AddonData());
  hovle::InstallGgmlLogger();
  exports.Set("buildInfo", Napi::String::New(env, HOVLE_BUILD_INFO_JSON));
  exports.Set("registerErrorClass", Napi::Function::New(env, hovle::RegisterErrorClass, "registerErrorClass"));
  exports.Set("systemInfo", Napi::Function::New(env, hovle::Guarded<hovle::SystemInfo>, "systemInfo"));
  exports.Set("runReferenceGraph", Napi::Function::New(env, hovle::Guarded<hovle::RunReferenceGraph>, "runReferenceGraph"));
  exports.Set("ggmlTypes", Napi::Function::New(env, hovle::Guarded<hovle::GgmlTypes>, "ggmlTypes"));
  exports.Set("convertRows", Napi::Function::New(env, hovle::Guarded<hovle::ConvertRows>, "convertRows"));
  exports.Set("ggufInspect", Napi::Function::New(env, hovle::Guarded<hovle::GgufInspect>, "ggufInspect"));
  exports.Set("preprocessImage", Napi::Function::New(env, hovle::Guarded<hovle::PreprocessImage>, "preprocessImage"));
  exports.Set("decodeImage", Napi::Function::New(env, hovle::Guarded<hovle::DecodeImageJs>, "decodeImage"));
  exports.Set("imageInfo", Napi::Function::New(env, hovle::Guarded<hovle::ImageInfo>, "imageInfo"));
  exports.Set("targetRatios", Napi::Function::New(env, hovle::Guarded<hovle::TargetRatiosJs>, "targetRatios"));
  exports.Set("defaultComputeThreads", Napi::Function::New(env, hovle::Guarded<hovle::DefaultComputeThreadsJs>, "defaultComputeThreads"));
  exports.Set("hostMemoryAvailable", Napi::Function::New(env, hovle::Guarded<hovle::HostMemoryAvailableJs>, "hostMemoryAvailable"));
  exports.Set("createTokenizer", Napi::Function::New(env, hovle::Guarded<hovle::CreateTokenizer>, "createTokenizer"));
  hovle::RegisterModelClasses(env, exports);
  exports.Set("Sampler", hovle::SamplerWrap::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(hovle, Init)
