#include "memory.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "errors.h"
#include "js_values.h"
#include "linux_files.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace hovle {
namespace {

#ifdef __linux__
// Headroom under the cgroup memory limits of this process: limit minus usage, where usage
// leaves out inactive page cache (the kernel reclaims it before it would kill), as container
// runtimes count a working set. Walks up the v2 hierarchy (a parent may have the lower limit).
bool CgroupHeadroom(const std::string& root, uint64_t& headroom, std::string& where) {
  bool found = false;
  auto consider = [&](uint64_t limit, uint64_t usage, uint64_t inactive, const std::string& dir) {
    if (limit >= (uint64_t{1} << 60)) return;  // v1's "unlimited" is a huge number
    const uint64_t used = usage > inactive ? usage - inactive : 0;
    const uint64_t room = limit > used ? limit - used : 0;
    if (!found || room < headroom) {
      headroom = room;
      where = dir;
      found = true;
    }
  };
  const Cgroups cgroups(root);
  const std::string v1 = cgroups.V1Dir("memory", {"memory"});
  if (!v1.empty()) {
    uint64_t limit = 0, usage = 0, inactive = 0;
    if ((ReadStat(v1 + "/memory.stat", "hierarchical_memory_limit", limit) || ReadNumber(v1 + "/memory.limit_in_bytes", limit)) &&
        ReadNumber(v1 + "/memory.usage_in_bytes", usage)) {
      if (!ReadStat(v1 + "/memory.stat", "total_inactive_file", inactive)) ReadStat(v1 + "/memory.stat", "inactive_file", inactive);
      consider(limit, usage, inactive, v1);
    }
  }
  for (const std::string& dir : cgroups.V2Dirs()) {
    uint64_t limit = 0, usage = 0, inactive = 0;
    if (ReadNumber(dir + "/memory.max", limit) && ReadNumber(dir + "/memory.current", usage)) {
      ReadStat(dir + "/memory.stat", "inactive_file", inactive);
      consider(limit, usage, inactive, dir);
    }
  }
  return found;
}
#endif

MemoryAvailable Cap(MemoryAvailable a, uint64_t limit) {
  if (limit > 0 && (!a.known || limit < a.bytes)) {
    a.known = true;
    a.bytes = static_cast<size_t>(limit);
    a.source = "HOVLE_MEMORY_LIMIT_BYTES";
  }
  return a;
}

}  // namespace

std::string FormatMiB(size_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

uint64_t MemoryLimitFromEnv() {
  const char* v = std::getenv("HOVLE_MEMORY_LIMIT_BYTES");
  if (v == nullptr || *v == '\0') return 0;
  char* end = nullptr;
  errno = 0;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || n == 0 || *v == '-') {
    throw Error("INVALID_ARGUMENT", std::string("HOVLE_MEMORY_LIMIT_BYTES must be a positive number of bytes, not '") + v + "'");
  }
  return n;
}

MemoryAvailable HostMemoryAvailable(uint64_t limit, const std::string& root) {
  MemoryAvailable a;
#ifdef __linux__
  uint64_t kb = 0;
  if (ReadStat(root + "/proc/meminfo", "MemAvailable:", kb)) {
    a.known = true;
    a.bytes = static_cast<size_t>(kb * 1024);
    a.source = "MemAvailable in /proc/meminfo";
  }
  uint64_t room = 0;
  std::string where;
  if (CgroupHeadroom(root, room, where) && (!a.known || room < a.bytes)) {
    a.known = true;
    a.bytes = static_cast<size_t>(room);
    a.source = "the memory limit of cgroup " + where;
  }
#else
  (void)root;
  ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
  if (cpu != nullptr) {
    size_t free = 0, total = 0;
    ggml_backend_dev_memory(cpu, &free, &total);
    if (total > 0) {
      a.known = true;
      a.bytes = free;
      a.source = "free host memory";
    }
  }
#endif
  return Cap(a, limit);
}

MemoryAvailable DeviceMemoryAvailable(ggml_backend_dev_t dev, uint64_t limit) {
  if (dev == nullptr || ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU) return HostMemoryAvailable(limit);
  MemoryAvailable a;
  size_t free = 0, total = 0;
  ggml_backend_dev_memory(dev, &free, &total);
  if (total > 0) {
    a.known = true;
    a.bytes = free;
    a.source = std::string("free memory ggml reports for ") + ggml_backend_dev_name(dev);
  }
  return Cap(a, limit);
}

void CheckMemory(ggml_backend_dev_t dev, size_t need, const std::string& what, uint64_t limit, const std::string& hint) {
  const bool host = dev == nullptr || ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU;
  const MemoryAvailable a = DeviceMemoryAvailable(dev, limit);
  if (!a.known || need <= a.bytes) return;
  throw Error(host ? "OUT_OF_MEMORY" : "OUT_OF_DEVICE_MEMORY",
              what + " needs " + FormatMiB(need) + ", " + FormatMiB(a.bytes) + " available " +
                  (host ? std::string("in host memory") : std::string("on ") + ggml_backend_dev_name(dev)) + " (" + a.source + ")" +
                  (hint.empty() ? "" : ". " + hint));
}

void ReleaseFreeHeap() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

Napi::Value ReleaseBuffersJs(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsArray()) throw Error("INVALID_ARGUMENT", "releaseBuffers takes an array of typed arrays");
  Napi::Array arrays = info[0].As<Napi::Array>();
  // All checked before any is detached: a bad entry leaves every array as it was.
  std::vector<Napi::ArrayBuffer> bufs;
  for (uint32_t i = 0; i < arrays.Length(); ++i) {
    Napi::Value v = arrays.Get(i);
    if (!v.IsTypedArray()) throw Error("INVALID_ARGUMENT", "releaseBuffers takes an array of typed arrays");
    bufs.push_back(v.As<Napi::TypedArray>().ArrayBuffer());
  }
  size_t bytes = 0;
  for (Napi::ArrayBuffer& buf : bufs) {
    if (buf.IsDetached()) continue;
    bytes += buf.ByteLength();
    buf.Detach();
  }
  // glibc serves blocks this size from the heap once one of them has been unmapped (the
  // threshold rises to it) and keeps them there after the free: give those pages back too,
  // once for the lot (the trim walks every arena).
  if (bytes >= (size_t{1} << 20)) ReleaseFreeHeap();
  return info.Env().Undefined();
}

Napi::Value HostMemoryAvailableJs(const Napi::CallbackInfo& info) {
  const std::string root = OptionalStringArg(info, 0);
  const MemoryAvailable a = HostMemoryAvailable(0, root);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("known", a.known);
  o.Set("bytes", static_cast<double>(a.bytes));
  o.Set("source", a.source);
  return o;
}

}  // namespace hovle
