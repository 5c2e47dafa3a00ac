// GPU memory read bandwidth, the decode ceiling when the weights live on the device (the
// counterpart of bench/membw.c): every block streams its slice of a buffer far larger than the
// L2 with 16-byte loads and folds it into one word, so the bytes are read and nothing is written
// but one word per block. The best of several passes, timed with CUDA events, is printed in bytes
// per second (one number on stdout, as membw.c does).
//   nvcc -O3 -arch=sm_90 bench/membw.cu -o membw-cuda && ./membw-cuda [MiB]
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(x)                                                            \
  do {                                                                      \
    cudaError_t e_ = (x);                                                   \
    if (e_ != cudaSuccess) {                                                \
      fprintf(stderr, "membw-cuda: %s: %s\n", #x, cudaGetErrorString(e_)); \
      return 1;                                                             \
    }                                                                       \
  } while (0)

__global__ void fill(uint4* buf, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    buf[i] = make_uint4((unsigned)i, (unsigned)(i >> 7), (unsigned)(i * 3), (unsigned)~i);
}

__global__ void readAll(const uint4* __restrict__ buf, size_t n, unsigned* out) {
  unsigned acc = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint4 v = __ldg(buf + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  // Makes the loads observable; the race between threads of a block does not matter.
  if (acc == 0x9e3779b9u) out[blockIdx.x] = acc;
}

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 4096;
  size_t n = mib * 1024 * 1024 / sizeof(uint4);
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  uint4* buf;
  unsigned* out;
  CHECK(cudaMalloc(&buf, n * sizeof(uint4)));
  CHECK(cudaMalloc(&out, 65536 * sizeof(unsigned)));
  const int threads = 512, blocks = sms * 8;
  fill<<<blocks, threads>>>(buf, n);
  CHECK(cudaGetLastError());
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  double best = 0;
  for (int pass = 0; pass < 10; pass++) {
    CHECK(cudaEventRecord(a));
    readAll<<<blocks, threads>>>(buf, n, out);
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    double bps = (double)(n * sizeof(uint4)) / (ms * 1e-3);
    if (bps > best) best = bps;
  }
  printf("%.0f\n", best);
  return 0;
}
