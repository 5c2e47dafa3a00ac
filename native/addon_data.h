// Per-environment state: Node worker_threads each load the addon into their own env.
#pragma once

#include <napi.h>

namespace hovle {

struct AddonData {
  Napi::FunctionReference errorClass;
  Napi::FunctionReference modelCtor;
  Napi::FunctionReference contextCtor;
  Napi::FunctionReference samplerCtor;
  Napi::FunctionReference cancelFlagCtor;

  static AddonData& Get(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }
};

}  // namespace hovle
