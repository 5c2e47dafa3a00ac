// Transparent huge pages for the large host buffers (repacked weights, KV caches).
#pragma once

#include "ggml-backend.h"

namespace hovle {

// Asks Linux to back `buf` with 2 MiB pages (madvise MADV_HUGEPAGE). Decode streams every
// weight once per token; with 4 KiB pages that is a TLB miss per page, about 300,000 per token
// for a Q4_0 model. Under the common THP setting "madvise" nothing gets huge pages unless it
// asks. Must run before the buffer is first written, since pages are chosen at the first
// touch. Advisory: a kernel without THP, or another OS, leaves the buffer as it is.
void AdviseHugePages(ggml_backend_buffer_t buf);

}  // namespace hovle
