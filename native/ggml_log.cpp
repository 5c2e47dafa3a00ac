#include "ggml_log.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ggml.h"

namespace hovle {
namespace {

int ThresholdFromEnv() {
  const char* v = std::getenv("HOVLE_LOG");
  if (v == nullptr) return GGML_LOG_LEVEL_WARN;
  if (std::strcmp(v, "debug") == 0) return GGML_LOG_LEVEL_DEBUG;
  if (std::strcmp(v, "info") == 0) return GGML_LOG_LEVEL_INFO;
  if (std::strcmp(v, "error") == 0) return GGML_LOG_LEVEL_ERROR;
  return GGML_LOG_LEVEL_WARN;
}

// ggml continues multi-part lines with GGML_LOG_LEVEL_CONT; they inherit the previous verdict.
thread_local bool g_last_printed = false;

void Log(enum ggml_log_level level, const char* text, void* user_data) {
  const int threshold = *static_cast<const int*>(user_data);
  bool print;
  if (level == GGML_LOG_LEVEL_CONT) {
    print = g_last_printed;
  } else {
    print = level != GGML_LOG_LEVEL_NONE && static_cast<int>(level) >= threshold;
    g_last_printed = print;
  }
  if (print) {
    std::fputs(text, stderr);
  }
}

}  // namespace

void InstallGgmlLogger() {
  static int threshold = ThresholdFromEnv();
  ggml_log_set(Log, &threshold);
}

}  // namespace hovle
