// Memory read bandwidth, the ceiling for decode speed: every decoded token streams all the
// weights once. T threads (OpenMP) sum disjoint slices of a buffer far larger than the caches;
// the best of several passes is printed in bytes per second (one number on stdout).
//   cc -O3 -march=native -fopenmp bench/membw.c -o membw && ./membw [MiB] [threads]
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 1024;
  int threads = argc > 2 ? atoi(argv[2]) : omp_get_max_threads();
  size_t n = mib * 1024 * 1024 / sizeof(uint64_t);
  uint64_t* buf = aligned_alloc(64, n * sizeof(uint64_t));
  if (!buf) return 1;
  // Touch every page first (in parallel, so pages spread like the weights' would).
#pragma omp parallel for num_threads(threads)
  for (size_t i = 0; i < n; i++) buf[i] = i;
  double best = 0;
  volatile uint64_t sink = 0;
  for (int pass = 0; pass < 7; pass++) {
    double t0 = now();
    uint64_t total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      int t = omp_get_thread_num(), nt = omp_get_num_threads();
      size_t lo = n / nt * t, hi = t == nt - 1 ? n : n / nt * (t + 1);
#ifdef __AVX2__
      // Four independent 256-bit accumulators keep enough loads in flight to saturate memory.
      __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
      size_t i = lo;
      for (; i + 16 <= hi; i += 16) {
        a0 = _mm256_xor_si256(a0, _mm256_loadu_si256((const __m256i*)(buf + i)));
        a1 = _mm256_xor_si256(a1, _mm256_loadu_si256((const __m256i*)(buf + i + 4)));
        a2 = _mm256_xor_si256(a2, _mm256_loadu_si256((const __m256i*)(buf + i + 8)));
        a3 = _mm256_xor_si256(a3, _mm256_loadu_si256((const __m256i*)(buf + i + 12)));
      }
      uint64_t lanes[4];
      _mm256_storeu_si256((__m256i*)lanes, _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3)));
      total += lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
      for (; i < hi; i++) total += buf[i];
#else
      for (size_t i = lo; i < hi; i++) total += buf[i];
#endif
    }
    double dt = now() - t0;
    sink += total;
    double bw = (double)n * sizeof(uint64_t) / dt;
    if (bw > best) best = bw;
  }
  printf("%.0f\n", best);
  free(buf);
  return (int)(sink & 0);
}
