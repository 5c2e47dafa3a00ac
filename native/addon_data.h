// Per-environment state: Node worker_threads each load the addon into their own env.
#pragma once

#include <napi.h>

#include <memory>

namespace hovle {

class EnvTasks;

struct AddonData {
  Napi::FunctionReference errorClass;
  Napi::FunctionReference modelCtor;
  Napi::FunctionReference contextCtor;
  Napi::FunctionReference samplerCtor;
  Napi::FunctionReference cancelFlagCtor;
  // The environment's unsettled tasks (task_thread.h), created on first use.
  std::shared_ptr<EnvTasks> tasks;

  static AddonData& Get(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }
};

}  // namespace hovle
