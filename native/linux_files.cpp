#include "linux_files.h"

#ifdef __linux__

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace hovle {
namespace {

bool IsCgroupDir(const std::string& path) {
  std::ifstream f(path + "/cgroup.procs");
  return f.good();
}

}  // namespace

bool ReadNumber(const std::string& path, uint64_t& out) {
  std::ifstream f(path);
  std::string s;
  if (!(f >> s) || s.empty() || s[0] < '0' || s[0] > '9') return false;
  out = std::strtoull(s.c_str(), nullptr, 10);
  return true;
}

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

std::set<int> ParseCpuList(const std::string& text) {
  std::set<int> cpus;
  std::stringstream ss(text);
  for (std::string part; std::getline(ss, part, ',');) {
    const char* s = part.c_str();
    char* end = nullptr;
    const long lo = std::strtol(s, &end, 10);
    if (end == s || lo < 0) return {};
    long hi = lo;
    if (*end == '-') {
      const char* h = end + 1;
      hi = std::strtol(h, &end, 10);
      if (end == h || hi < lo) return {};
    }
    while (*end == ' ' || *end == '\n' || *end == '\t') ++end;
    if (*end != '\0' || hi >= 1 << 16) return {};  // beyond any machine: a corrupt list
    for (long c = lo; c <= hi; ++c) cpus.insert(static_cast<int>(c));
  }
  return cpus;
}

Cgroups::Cgroups(const std::string& root) : root_(root) {
  std::string v2;
  bool has_v2 = false;
  std::ifstream f(root + "/proc/self/cgroup");
  for (std::string line; std::getline(f, line);) {
    const size_t a = line.find(':');
    const size_t b = a == std::string::npos ? std::string::npos : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    const std::string path = line.substr(b + 1);
    if (line.compare(0, a, "0") == 0 && controllers.empty() && !path.empty()) {
      v2 = path;
      has_v2 = true;
    }
    std::stringstream ss(controllers);
    for (std::string c; std::getline(ss, c, ',');) v1_.emplace_back(c, path);
  }
  if (!has_v2) return;
  const std::string mount = root + "/sys/fs/cgroup";
  std::string rel = v2 == "/" ? "" : v2;
  if (!IsCgroupDir(mount + rel)) rel = "";
  for (;;) {
    v2_dirs_.push_back(mount + rel);
    if (rel.empty()) break;
    rel = rel.substr(0, rel.rfind('/'));
  }
}

std::string Cgroups::V1Dir(const std::string& controller, const std::vector<std::string>& mounts) const {
  for (const auto& [c, path] : v1_) {
    if (c != controller) continue;
    for (const std::string& m : mounts) {
      const std::string mount = root_ + "/sys/fs/cgroup/" + m;
      if (!IsCgroupDir(mount)) continue;
      const std::string dir = mount + (path == "/" ? "" : path);
      return IsCgroupDir(dir) ? dir : mount;
    }
  }
  return "";
}

}  // namespace hovle

#endif
