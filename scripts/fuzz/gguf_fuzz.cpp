// libFuzzer target: the input bytes are a GGUF file, loaded by hovle::Model::Load exactly as the
// addon's loadModel() does (ggml's gguf parser, hovle's checks of every tensor against the
// model's spec, the NaN scan of the small vectors, then placement: repacked copies and an mmap
// of the file on the CPU backend). Every input must either load or throw hovle::Error; a crash,
// a ggml abort, a sanitizer report or any other exception is a finding.
//
// The spec (hyperparameters and tensor list, as the JS side derives them from the file's
// metadata) is fixed: spec.inc, written by scripts/fuzz/seeds.ts for the seeds' micro model.
// The JS-side checks of the metadata are exercised by test/gguf-corpus.test.ts.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "errors.h"
#include "ggml.h"
#include "model.h"

namespace {

#include "spec.inc"  // hovle::HParams FuzzHParams(); std::vector<hovle::TensorSpec> FuzzSpecs();

int g_fd = -1;
std::string g_path;
hovle::HParams g_hp;
std::vector<hovle::TensorSpec> g_specs;

void Quiet(ggml_log_level, const char*, void*) {}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // ggml logs a line for every file it refuses; HOVLE_FUZZ_VERBOSE=1 keeps them.
  if (std::getenv("HOVLE_FUZZ_VERBOSE") == nullptr) ggml_log_set(Quiet, nullptr);
  // The file lives in memory; its /proc path is what ggml and the loader open (and mmap).
  g_fd = memfd_create("hovle-gguf-fuzz", 0);
  if (g_fd < 0) std::abort();
  g_path = "/proc/self/fd/" + std::to_string(g_fd);
  g_hp = FuzzHParams();
  g_specs = FuzzSpecs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (ftruncate(g_fd, 0) != 0 || pwrite(g_fd, data, size, 0) != static_cast<ssize_t>(size)) std::abort();
  hovle::LoadOptions opts;  // the addon's defaults on the CPU: mmap + repack
  std::atomic<bool> cancel{false};
  try {
    std::shared_ptr<hovle::Model> model = hovle::Model::Load(g_path, g_hp, g_specs, opts, [](double, double) {}, cancel);
  } catch (const hovle::Error&) {
    // refused with a typed error: what must happen to a bad file
  }
  return 0;
}
