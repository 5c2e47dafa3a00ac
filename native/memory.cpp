#include "memory.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "errors.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace hovle {
namespace {

#ifdef __linux__
// The first number in a file ("max" and missing files: none).
bool ReadNumber(const std::string& path, uint64_t& out) {
  std::ifstream f(path);
  std::string s;
  if (!(f >> s) || s.empty() || s[0] < '0' || s[0] > '9') return false;
  out = std::strtoull(s.c_str(), nullptr, 10);
  return true;
}

// A "key value" line of a stat file such as memory.stat (or "key: value kB" in /proc/meminfo).
bool ReadStat(const std::string& path, const std::string& key, uint64_t& out) {
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) {
    std::istringstream ls(line);
    std::string k;
    uint64_t v = 0;
    if (ls >> k >> v && k == key) {
      out = v;
      return true;
    }
  }
  return false;
}

bool IsDir(const std::string& path) {
  std::ifstream f(path + "/cgroup.procs");
  return f.good();
}

// Headroom under the cgroup memory limits of this process: limit minus usage, where usage
// leaves out inactive page cache (the kernel reclaims it before it would kill), as container
// runtimes count a working set. Walks up the v2 hierarchy (a parent may have the lower limit).
bool CgroupHeadroom(uint64_t& headroom, std::string& where) {
  std::ifstream f("/proc/self/cgroup");
  std::string line;
  std::string v2, v1;
  while (std::getline(f, line)) {
    const size_t a = line.find(':');
    const size_t b = a == std::string::npos ? std::string::npos : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    const std::string path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty()) v2 = path;
    std::stringstream ss(controllers);
    for (std::string c; std::getline(ss, c, ',');) {
      if (c == "memory") v1 = path;
    }
  }
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
  if (!v1.empty()) {
    // A container sees its own cgroup at the mount's root rather than under its full path.
    std::string dir = "/sys/fs/cgroup/memory" + (v1 == "/" ? "" : v1);
    if (!IsDir(dir)) dir = "/sys/fs/cgroup/memory";
    uint64_t limit = 0, usage = 0, inactive = 0;
    if ((ReadStat(dir + "/memory.stat", "hierarchical_memory_limit", limit) || ReadNumber(dir + "/memory.limit_in_bytes", limit)) &&
        ReadNumber(dir + "/memory.usage_in_bytes", usage)) {
      if (!ReadStat(dir + "/memory.stat", "total_inactive_file", inactive)) ReadStat(dir + "/memory.stat", "inactive_file", inactive);
      consider(limit, usage, inactive, dir);
    }
  }
  if (!v2.empty()) {
    std::string rel = v2 == "/" ? "" : v2;
    if (!IsDir("/sys/fs/cgroup" + rel)) rel = "";
    for (;;) {
      const std::string dir = "/sys/fs/cgroup" + rel;
      uint64_t limit = 0, usage = 0, inactive = 0;
      if (ReadNumber(dir + "/memory.max", limit) && ReadNumber(dir + "/memory.current", usage)) {
        ReadStat(dir + "/memory.stat", "inactive_file", inactive);
        consider(limit, usage, inactive, dir);
      }
      if (rel.empty()) break;
      rel = rel.substr(0, rel.rfind('/'));
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

MemoryAvailable HostMemoryAvailable(uint64_t limit) {
  MemoryAvailable a;
#ifdef __linux__
  uint64_t kb = 0;
  if (ReadStat("/proc/meminfo", "MemAvailable:", kb)) {
    a.known = true;
    a.bytes = static_cast<size_t>(kb * 1024);
    a.source = "MemAvailable in /proc/meminfo";
  }
  uint64_t room = 0;
  std::string where;
  if (CgroupHeadroom(room, where) && (!a.known || room < a.bytes)) {
    a.known = true;
    a.bytes = static_cast<size_t>(room);
    a.source = "the memory limit of cgroup " + where;
  }
#else
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

}  // namespace hovle
