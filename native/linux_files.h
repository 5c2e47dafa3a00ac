// Readers for Linux's /proc and /sys files and the process's cgroup directories, shared by the
// memory checks (memory.cpp) and the default thread count (cpu_threads.cpp). `root` prefixes
// every path: "" on a live system, a directory laid out like one in tests.
#pragma once

#ifdef __linux__

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace hovle {

// The first number in a file ("max" and missing files: none).
bool ReadNumber(const std::string& path, uint64_t& out);

// A "key value" line of a stat file such as memory.stat (or "key: value kB" in /proc/meminfo).
bool ReadStat(const std::string& path, const std::string& key, uint64_t& out);

// A CPU list such as "0-3,8,10-11" (sysfs and /proc/self/status format); empty if unreadable.
std::set<int> ParseCpuList(const std::string& text);

// The process's cgroups, from one read of /proc/self/cgroup.
class Cgroups {
 public:
  explicit Cgroups(const std::string& root);

  // The v2 directory and its ancestors up to the mount, innermost first; empty when the process
  // has no v2 cgroup. A container sees its own cgroup at the mount's root rather than under the
  // path /proc/self/cgroup names, so a missing directory means the mount's root.
  const std::vector<std::string>& V2Dirs() const { return v2_dirs_; }

  // The v1 directory for `controller` (e.g. "memory", "cpu"), under the first of `mounts`
  // (e.g. "cpu,cpuacct", "cpu") that exists; "" when it has none.
  std::string V1Dir(const std::string& controller, const std::vector<std::string>& mounts) const;

 private:
  std::string root_;
  std::vector<std::string> v2_dirs_;
  std::vector<std::pair<std::string, std::string>> v1_;  // controller, path
};

}  // namespace hovle

#endif
