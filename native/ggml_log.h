// Routes ggml's log output through one filter so a library embedded in someone's service stays
// quiet unless asked (HOVLE_LOG=error|warn|info|debug, default warn).
#pragma once

namespace hovle {

void InstallGgmlLogger();

}  // namespace hovle
