// Entry point of hovle.node. The JS facade (src/native/) is the only caller: it validates
// arguments first, so the checks here are the last line of defence, not the user-facing ones.
#include <napi.h>

#include "addon_data.h"
#include "build_info.h"
#include "cancel_flag.h"
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

// Exports `Fn` as `name` through Guarded (errors.h): its C++ exceptions reach JS as HovleErrors.
template <Napi::Value (*Fn)(const Napi::CallbackInfo&)>
void Export(Napi::Env env, Napi::Object exports, const char* name) {
  exports.Set(name, Napi::Function::New(env, hovle::Guarded<Fn>, name));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new hovle::AddonData());
  hovle::InstallGgmlLogger();
  exports.Set("buildInfo", Napi::String::New(env, HOVLE_BUILD_INFO_JSON));
  exports.Set("maxComputeThreads", Napi::Number::New(env, hovle::kMaxComputeThreads));
  exports.Set("registerErrorClass", Napi::Function::New(env, hovle::RegisterErrorClass, "registerErrorClass"));
  Export<hovle::SystemInfo>(env, exports, "systemInfo");
  Export<hovle::RunReferenceGraph>(env, exports, "runReferenceGraph");
  Export<hovle::GgmlTypes>(env, exports, "ggmlTypes");
  Export<hovle::ConvertRows>(env, exports, "convertRows");
  Export<hovle::GgufInspect>(env, exports, "ggufInspect");
  Export<hovle::PreprocessImage>(env, exports, "preprocessImage");
  Export<hovle::DecodeImageJs>(env, exports, "decodeImage");
  Export<hovle::ImageInfo>(env, exports, "imageInfo");
  Export<hovle::TargetRatiosJs>(env, exports, "targetRatios");
  Export<hovle::DefaultComputeThreadsJs>(env, exports, "defaultComputeThreads");
  Export<hovle::HostMemoryAvailableJs>(env, exports, "hostMemoryAvailable");
  Export<hovle::ReleaseBuffersJs>(env, exports, "releaseBuffers");
  Export<hovle::CpuComputeJobsJs>(env, exports, "cpuComputeJobs");
  Export<hovle::CreateTokenizer>(env, exports, "createTokenizer");
  hovle::RegisterModelClasses(env, exports);
  exports.Set("Sampler", hovle::SamplerWrap::Define(env));
  exports.Set("CancelFlag", hovle::CancelFlagWrap::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(hovle, Init)
