# hovle: for scripts/check-cuda-compile.sh only. Without cuBLAS installed, FindCUDAToolkit does
# not create CUDA::cublas, and CMake refuses to generate a target that links to it. Compiling
# (not linking) the static ggml-cuda library needs only the names to exist.
foreach(_t cublas cublasLt cublas_static cublasLt_static cuda_driver)
  if(NOT TARGET CUDA::${_t})
    add_library(CUDA::${_t} INTERFACE IMPORTED GLOBAL)
  endif()
endforeach()
