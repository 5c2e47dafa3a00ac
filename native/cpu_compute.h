// CPU graph computes, from every context of every model in the process, run on one thread.
//
// Why: ggml's CPU backend parallelises with OpenMP, and libgomp gives each thread that opens a
// parallel region a team of its own. With a team per model thread, libgomp counts more threads
// than cores once two models have computed, and from then on throttles the spin-wait at every
// barrier almost to nothing (futex sleeps instead). Measured on this project's 2-core machine:
// Q4_0 decode fell from 14.4 to 10.1 tok/s once a second (tiny) model had run once in the same
// process; OMP_WAIT_POLICY=active restores it but keeps a core spinning while idle. One master
// thread for all CPU graphs keeps one team. The graphs of several CPU models could not run in
// parallel to any gain anyway: each takes every core.
//
// A context that also has layers on a device (partial offload) drives the device from its
// model's thread (ggml-vulkan on lavapipe needs that, see task_thread.h), so it cannot hand its
// whole graph over: only its CPU backend's splits make the hop (CpuBackendOnComputeThread).
#pragma once

#include <ggml-backend.h>

#include <cstdint>
#include <functional>

namespace hovle {

// Runs `fn` on the shared CPU compute thread and waits for it; an exception it throws is
// rethrown here. Must not be called from that thread.
void RunOnCpuComputeThread(const std::function<void()>& fn);

// `cpu`, a CPU backend, as one whose graph computes run through RunOnCpuComputeThread; everything
// else (threads, buffers, the device) stays the CPU backend's. Takes `cpu` over: freeing the
// result frees it, and so does a throw from here.
ggml_backend_t CpuBackendOnComputeThread(ggml_backend_t cpu);

// Jobs run on the shared thread so far, for tests: a context's CPU work must show up here.
uint64_t CpuComputeJobs();

}  // namespace hovle
