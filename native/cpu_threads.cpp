#include "cpu_threads.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <thread>
#include <utility>

#ifdef __APPLE__
#include <sys/sysctl.h>
#include <sys/types.h>
#endif

#include <ggml.h>

#include "js_values.h"
#include "linux_files.h"

namespace hovle {
namespace {

int HardwareThreads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

#ifdef __linux__
std::string ReadLine(const std::string& path, const std::string& prefix = "") {
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);) {
    if (line.compare(0, prefix.size(), prefix) == 0) return line.substr(prefix.size());
  }
  return "";
}

// The CPU quota of the process's cgroups, in whole CPUs rounded up; 0 when there is none.
int CpuQuota(const std::string& root) {
  int quota = 0;
  auto consider = [&](uint64_t q, uint64_t period) {
    if (q == 0 || period == 0) return;
    const uint64_t cpus = (q + period - 1) / period;
    if (cpus > 0 && cpus < (1u << 20) && (quota == 0 || static_cast<int>(cpus) < quota)) quota = static_cast<int>(cpus);
  };
  const Cgroups cgroups(root);
  for (const std::string& dir : cgroups.V2Dirs()) {
    // cpu.max: "max 100000" (no limit) or "150000 100000" (1.5 CPUs).
    std::ifstream f(dir + "/cpu.max");
    std::string q;
    uint64_t period = 0;
    if (f >> q >> period && q != "max") consider(std::strtoull(q.c_str(), nullptr, 10), period);
  }
  const std::string v1 = cgroups.V1Dir("cpu", {"cpu,cpuacct", "cpu"});
  if (!v1.empty()) {
    // cfs_quota_us is -1 without a limit: ReadNumber refuses the sign.
    uint64_t q = 0, period = 0;
    if (ReadNumber(v1 + "/cpu.cfs_quota_us", q) && ReadNumber(v1 + "/cpu.cfs_period_us", period)) consider(q, period);
  }
  return quota;
}
#endif

}  // namespace

const int kMaxComputeThreads = GGML_MAX_N_THREADS;

namespace {

int CountComputeThreads(const std::string& root) {
#ifdef __linux__
  // The CPUs the process may use that are online (an affinity mask can name CPUs that are not).
  const std::set<int> allowed = ParseCpuList(ReadLine(root + "/proc/self/status", "Cpus_allowed_list:"));
  const std::set<int> online = ParseCpuList(ReadLine(root + "/sys/devices/system/cpu/online"));
  std::set<int> cpus;
  std::set_intersection(allowed.begin(), allowed.end(), online.begin(), online.end(), std::inserter(cpus, cpus.end()));
  if (cpus.empty()) cpus = allowed.empty() ? online : allowed;
  if (cpus.empty()) return HardwareThreads();
  // Intel hybrid CPUs list their performance cores here (the perf driver's "cpu_core" PMU).
  const std::set<int> perf = ParseCpuList(ReadLine(root + "/sys/devices/cpu_core/cpus"));
  std::set<int> fast;
  std::set_intersection(cpus.begin(), cpus.end(), perf.begin(), perf.end(), std::inserter(fast, fast.end()));
  if (!fast.empty()) cpus = std::move(fast);
  std::set<std::pair<int64_t, int64_t>> cores;
  for (int c : cpus) {
    const std::string topo = root + "/sys/devices/system/cpu/cpu" + std::to_string(c) + "/topology/";
    uint64_t package = 0, core = 0;
    // Unknown topology: count the CPU as a core of its own.
    if (ReadNumber(topo + "physical_package_id", package) && ReadNumber(topo + "core_id", core)) {
      cores.emplace(static_cast<int64_t>(package), static_cast<int64_t>(core));
    } else {
      cores.emplace(-1, c);
    }
  }
  int n = static_cast<int>(cores.size());
  const int quota = CpuQuota(root);
  if (quota > 0) n = std::min(n, quota);
  return std::max(1, n);
#elif defined(__APPLE__)
  (void)root;
  // perflevel0 is the fastest class of core; Intel Macs have only it or lack the key.
  for (const char* key : {"hw.perflevel0.physicalcpu", "hw.physicalcpu"}) {
    int32_t n = 0;
    size_t size = sizeof(n);
    if (sysctlbyname(key, &n, &size, nullptr, 0) == 0 && size == sizeof(n) && n > 0) return n;
  }
  return HardwareThreads();
#else
  (void)root;
  return HardwareThreads();
#endif
}

}  // namespace

int DefaultComputeThreads(const std::string& root) { return std::min(CountComputeThreads(root), kMaxComputeThreads); }

Napi::Value DefaultComputeThreadsJs(const Napi::CallbackInfo& info) {
  const std::string root = OptionalStringArg(info, 0);
  return Napi::Number::New(info.Env(), DefaultComputeThreads(root));
}

}  // namespace hovle
