# Which CPU code ggml is compiled with, for a given HOVLE_CPU. Included by CMakeLists.txt for the
# addon and, through CMAKE_PROJECT_INCLUDE, by scripts/build-llama-peer.mjs for the llama.cpp
# binaries we benchmark against, so both run the same kernels. Needs HOVLE_CPU set and a project()
# already declared (CMAKE_SYSTEM_PROCESSOR); sets HOVLE_CPU_REQUIRES for build-info.json.
# Safe to include more than once.

set(GGML_LLAMAFILE ON CACHE BOOL "" FORCE)             # llama.cpp's own default; keeps parity with llama-bench

# ggml can only dispatch between CPU variants at run time with backends as shared libraries
# (GGML_BACKEND_DL), which would break the one-file product. So the portable build targets a
# fixed baseline, and the JS loader checks the CPU against it before loading (see build-info.json).
set(HOVLE_CPU_REQUIRES "")
if(HOVLE_CPU STREQUAL "native")
  set(GGML_NATIVE ON CACHE BOOL "" FORCE)
else()
  set(GGML_NATIVE OFF CACHE BOOL "" FORCE)
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
    if(HOVLE_CPU STREQUAL "x86-64-v2")
      foreach(f AVX AVX2 BMI2 FMA F16C)
        set(GGML_${f} OFF CACHE BOOL "" FORCE)
      endforeach()
      set(HOVLE_CPU_REQUIRES sse4_2)
    elseif(HOVLE_CPU STREQUAL "portable")
      foreach(f SSE42 AVX AVX2 BMI2 FMA F16C)
        set(GGML_${f} ON CACHE BOOL "" FORCE)
      endforeach()
      set(HOVLE_CPU_REQUIRES sse4_2 avx avx2 bmi2 fma f16c)
    else()
      message(FATAL_ERROR "HOVLE_CPU must be portable, x86-64-v2 or native, not '${HOVLE_CPU}'")
    endif()
  endif()
endif()
