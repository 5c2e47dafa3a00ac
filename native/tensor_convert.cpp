#include "tensor_convert.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ggml.h"
#include "ggml_types.h"
#include "js_values.h"
#include "promise_worker.h"

namespace hovle {
namespace {

class ConvertWorker : public PromiseWorker {
 public:
  ConvertWorker(Napi::Env env, Napi::Uint8Array src, ggml_type srcType, ggml_type dstType, int64_t rows, int64_t cols,
                int threads)
      : PromiseWorker(env, "hovle.convertRows"),
        srcRef_(Napi::Persistent(src)),
        src_(src.Data()),
        srcType_(srcType),
        dstType_(dstType),
        rows_(rows),
        cols_(cols),
        threads_(threads) {}

 protected:
  void Run() override {
    const size_t srcRow = ggml_row_size(srcType_, cols_);
    const size_t dstRow = ggml_row_size(dstType_, cols_);
    dstSize_ = dstRow * static_cast<size_t>(rows_);
    dst_.reset(new uint8_t[dstSize_ == 0 ? 1 : dstSize_]);
    const int n = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads_, rows_)));
    std::vector<int64_t> nonFinite(n, 0);
    auto work = [&](int t) {
      const int64_t r0 = rows_ * t / n;
      const int64_t r1 = rows_ * (t + 1) / n;
      const int64_t nr = r1 - r0;
      if (nr <= 0) return;
      // ggml's row readers expect naturally aligned data; a Uint8Array may start anywhere.
      const uint8_t* in = src_ + r0 * srcRow;
      std::vector<uint64_t> aligned;
      if (reinterpret_cast<uintptr_t>(in) % alignof(float) != 0) {
        aligned.resize((nr * srcRow + 7) / 8);
        std::memcpy(aligned.data(), in, nr * srcRow);
        in = reinterpret_cast<const uint8_t*>(aligned.data());
      }
      const float* f32;
      std::vector<float> tmp;
      if (srcType_ == GGML_TYPE_F32) {
        f32 = reinterpret_cast<const float*>(in);
      } else {
        tmp.resize(static_cast<size_t>(nr * cols_));
        ggml_get_type_traits(srcType_)->to_float(in, tmp.data(), nr * cols_);
        f32 = tmp.data();
      }
      int64_t bad = 0;
      for (int64_t i = 0; i < nr * cols_; ++i) bad += !std::isfinite(f32[i]);
      nonFinite[t] = bad;
      ggml_quantize_chunk(dstType_, f32, dst_.get() + r0 * dstRow, 0, nr, cols_, nullptr);
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < n; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto& th : pool) th.join();
    for (int64_t v : nonFinite) nonFinite_ += v;
  }

  Napi::Value Result(Napi::Env env) override {
    uint8_t* raw = dst_.release();
    Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::NewOrCopy(
        env, raw, dstSize_, [](Napi::Env, uint8_t* p) { delete[] p; });
    Napi::Object o = Napi::Object::New(env);
    o.Set("data", buf);
    o.Set("nonFinite", static_cast<double>(nonFinite_));
    return o;
  }

 private:
  Napi::Reference<Napi::Uint8Array> srcRef_;  // keeps the source alive while the worker reads it
  const uint8_t* src_;
  ggml_type srcType_;
  ggml_type dstType_;
  int64_t rows_;
  int64_t cols_;
  int threads_;
  std::unique_ptr<uint8_t[]> dst_;
  size_t dstSize_ = 0;
  int64_t nonFinite_ = 0;
};


}  // namespace

Napi::Value ConvertRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw MakeError(env, "INVALID_ARGUMENT", "convertRows: src must be a Uint8Array");
  }
  Napi::Uint8Array src = info[0].As<Napi::Uint8Array>();
  const int64_t srcId = IntArg(info, 1, "srcType", 0, GGML_TYPE_COUNT - 1);
  const int64_t dstId = IntArg(info, 2, "dstType", 0, GGML_TYPE_COUNT - 1);
  const int64_t rows = IntArg(info, 3, "rows", 0, int64_t(1) << 40);
  const int64_t cols = IntArg(info, 4, "cols", 1, int64_t(1) << 32);
  const int64_t threads = IntArg(info, 5, "threads", 1, 1024);
  if (!IsKnownType(static_cast<int>(srcId)) || !CanRead(static_cast<ggml_type>(srcId))) {
    throw MakeError(env, "INVALID_ARGUMENT", "convertRows: cannot read ggml type " + std::to_string(srcId));
  }
  if (!IsKnownType(static_cast<int>(dstId)) || !CanWrite(static_cast<ggml_type>(dstId))) {
    throw MakeError(env, "INVALID_ARGUMENT", "convertRows: cannot write ggml type " + std::to_string(dstId));
  }
  const auto srcType = static_cast<ggml_type>(srcId);
  const auto dstType = static_cast<ggml_type>(dstId);
  for (ggml_type t : {srcType, dstType}) {
    if (cols % ggml_blck_size(t) != 0) {
      throw MakeError(env, "INVALID_ARGUMENT", "convertRows: " + std::to_string(cols) + " columns is not a multiple of " +
                                                   ggml_type_name(t) + "'s block size " +
                                                   std::to_string(ggml_blck_size(t)));
    }
  }
  // Overflow-safe size check: rows * row_size must equal the buffer length exactly.
  const size_t srcRow = ggml_row_size(srcType, cols);
  if (rows != 0 && (src.ByteLength() % srcRow != 0 || src.ByteLength() / srcRow != static_cast<size_t>(rows))) {
    throw MakeError(env, "INVALID_ARGUMENT", "convertRows: src holds " + std::to_string(src.ByteLength()) +
                                                 " bytes, expected " + std::to_string(rows) + " rows of " +
                                                 std::to_string(srcRow));
  }
  if (rows == 0 && src.ByteLength() != 0) {
    throw MakeError(env, "INVALID_ARGUMENT", "convertRows: src must be empty for 0 rows");
  }
  auto* worker = new ConvertWorker(env, src, srcType, dstType, rows, cols, static_cast<int>(threads));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace hovle
