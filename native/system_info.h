// systemInfo(): what this build of the addon can run on, gathered off the JS thread because
// initialising a GPU backend's registry can take hundreds of milliseconds.
#pragma once

#include <napi.h>

namespace hovle {

// systemInfo(): Promise<RawSystemInfo> (see src/native/addon.ts for the shape)
Napi::Value SystemInfo(const Napi::CallbackInfo& info);

// cpuComputeJobs(): graph computes run on the shared CPU thread so far (cpu_compute.h), for tests.
Napi::Value CpuComputeJobsJs(const Napi::CallbackInfo& info);

}  // namespace hovle
