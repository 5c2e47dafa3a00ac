// Memory checks before large allocations: a KV cache, compute buffers or copied weights that
// will not fit become an OUT_OF_MEMORY / OUT_OF_DEVICE_MEMORY error with the numbers, instead
// of an allocation that Linux overcommits and the OOM killer settles later.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "ggml-backend.h"

namespace hovle {

// What may still be allocated somewhere, and where that figure came from.
struct MemoryAvailable {
  bool known = false;
  size_t bytes = 0;
  std::string source;  // e.g. "MemAvailable in /proc/meminfo", "the cgroup limit", "HOVLE_MEMORY_LIMIT_BYTES"
};

// HOVLE_MEMORY_LIMIT_BYTES, read on the JS thread (getenv is not safe against a concurrent
// setenv, and Node's process.env setter is one): caps what is considered available on the host
// and on every device. 0 when unset. Throws INVALID_ARGUMENT when it is not a byte count.
uint64_t MemoryLimitFromEnv();

// Host memory: MemAvailable (Linux) lowered to the headroom of the process's cgroup (v1 or v2),
// elsewhere what ggml reports; then capped at `limit` when non-zero. `root` prefixes the /proc
// and /sys paths read (linux_files.h): "" on a live system.
MemoryAvailable HostMemoryAvailable(uint64_t limit, const std::string& root = "");

// hostMemoryAvailable(root?: string) -> { known, bytes, source }: for tests of the above.
Napi::Value HostMemoryAvailableJs(const Napi::CallbackInfo& info);

// The free memory ggml reports for a device (host memory for a CPU device); capped at `limit`.
MemoryAvailable DeviceMemoryAvailable(ggml_backend_dev_t dev, uint64_t limit);

// Throws OUT_OF_MEMORY (host) or OUT_OF_DEVICE_MEMORY when `need` bytes exceed what is available
// on `dev` (nullptr or a CPU device: host memory). `what` names the allocation for the message,
// e.g. "a 4096-position context (KV cache 96 MiB + compute buffers 20 MiB)"; `hint` is appended.
void CheckMemory(ggml_backend_dev_t dev, size_t need, const std::string& what, uint64_t limit, const std::string& hint = "");

// "123.4 MiB"
std::string FormatMiB(size_t bytes);

// Hands heap memory that is free but still held by the C allocator back to the OS. glibc keeps
// freed chunks below its mmap threshold, which rises to the largest buffer freed so far (up to
// 32 MB): after an image's pixel and row buffers (10-20 MB each, on both the JS and the worker
// thread) tens of MB stay resident. Called before each prefill (which touches the compute
// buffer) and after a load (its staging buffer). It lowers the RSS between calls, not the peak
// of an image call itself, whose own buffers are live at once. A no-op outside glibc.
void ReleaseFreeHeap();

// releaseBuffers(arrays: TypedArray[]): detaches the arrays' ArrayBuffers, so their memory goes
// back at once instead of at V8's next collection, which waits for ~64 MB of such garbage. For
// the image-sized arrays the runtime allocates for itself and drops after a call (pixels of a
// session's turn, image rows); never for an array the caller may still hold.
Napi::Value ReleaseBuffersJs(const Napi::CallbackInfo& info);

}  // namespace hovle
