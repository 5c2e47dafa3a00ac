#include "huge_pages.h"

#include <cstdint>

#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace hovle {

void AdviseHugePages(ggml_backend_buffer_t buf) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (buf == nullptr) return;
  // The CPU device's buffers, repacked ones included (their type does not report is_host: ggml
  // may not read their layout as plain tensors, but it is host memory all the same).
  ggml_backend_dev_t dev = ggml_backend_buft_get_device(ggml_backend_buffer_get_type(buf));
  if (!ggml_backend_buffer_is_host(buf) && (dev == nullptr || ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_CPU)) return;
  const auto base = reinterpret_cast<uintptr_t>(ggml_backend_buffer_get_base(buf));
  const size_t size = ggml_backend_buffer_get_size(buf);
  constexpr uintptr_t kHuge = 2u << 20;
  if (base == 0 || size < 2 * kHuge) return;
  // madvise wants a page-aligned start; only whole 2 MiB extents can become huge pages anyway.
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t start = (base + page - 1) & ~(page - 1);
  const uintptr_t end = (base + size) & ~(page - 1);
  if (end > start) madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE);
#else
  (void)buf;
#endif
}

}  // namespace hovle
