// The default number of threads for a context's graph computes.
#pragma once

#include <napi.h>

#include <string>

namespace hovle {

// One thread per physical core the process may run on, as llama.cpp's default does:
//  - SMT siblings share one core's execution units, and ggml's threads meet at a barrier after
//    every op, so a second thread per core mostly waits (llama.cpp users report 2.5 against 9
//    tok/s with every logical CPU busy);
//  - on a hybrid Intel CPU, performance cores only (a barrier waits for the slowest core);
//  - at most the cgroup's CPU quota, rounded up (a container limited to 2 CPUs of time on a
//    16-core host would otherwise run 16 threads that the kernel throttles in turn).
//  - at most kMaxComputeThreads, so that the default is always a value a context accepts.
// Linux reads the CPUs allowed from /proc/self/status and the topology from sysfs; macOS asks
// sysctl for the performance cores (Apple Silicon's efficiency cores would hold every barrier
// back, as on hybrid Intel); elsewhere, and wherever those are missing,
// std::thread::hardware_concurrency(). `root` prefixes every Linux path ("" on a live system;
// tests pass a directory laid out like one).
int DefaultComputeThreads(const std::string& root = "");

// ggml's limit on the threads of one graph compute (GGML_MAX_N_THREADS); exported to JS as
// `maxComputeThreads` so that the options are checked before a model loads.
extern const int kMaxComputeThreads;

// defaultComputeThreads(root?: string) -> number
Napi::Value DefaultComputeThreadsJs(const Napi::CallbackInfo& info);

}  // namespace hovle
