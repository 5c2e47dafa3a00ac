// preprocessImage(): the input descriptor is copied on the JS thread (the facade has already
// validated it); decoding, tiling and normalisation run on a worker thread.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"
#include "image.h"
#include "js_values.h"
#include "promise_worker.h"

namespace hovle {

const char* JpegDecoderName();

namespace {

struct PreprocessOptions {
  TileOptions tiles;
  DecodeOptions decode;
};

struct RawFrame {
  std::vector<uint8_t> data;
  int width = 0, height = 0, channels = 3, stride = 0;
  std::string format;
};

RgbImage RawToRgb(const RawFrame& f) {
  RgbImage img;
  img.width = f.width;
  img.height = f.height;
  img.rgb.resize(static_cast<size_t>(f.width) * f.height * 3);
  const bool bgr = f.format == "bgr" || f.format == "bgra";
  for (int y = 0; y < f.height; ++y) {
    const uint8_t* row = f.data.data() + static_cast<size_t>(y) * f.stride;
    uint8_t* out = &img.rgb[static_cast<size_t>(y) * f.width * 3];
    for (int x = 0; x < f.width; ++x) {
      const uint8_t* p = row + static_cast<size_t>(x) * f.channels;
      if (f.channels == 1) {
        out[x * 3] = out[x * 3 + 1] = out[x * 3 + 2] = p[0];
      } else {
        out[x * 3] = bgr ? p[2] : p[0];
        out[x * 3 + 1] = p[1];
        out[x * 3 + 2] = bgr ? p[0] : p[2];
      }
    }
  }
  return img;
}

class PreprocessWorker : public PromiseWorker {
 public:
  PreprocessWorker(Napi::Env env, std::vector<uint8_t> encoded, RawFrame raw, bool is_raw, PreprocessOptions opts)
      : PromiseWorker(env, "hovle.preprocessImage"), encoded_(std::move(encoded)), raw_(std::move(raw)),
        is_raw_(is_raw), opts_(opts) {}

 protected:
  void Run() override {
    RgbImage img = is_raw_ ? RawToRgb(raw_) : DecodeImage(encoded_.data(), encoded_.size(), opts_.decode);
    encoded_.clear();
    encoded_.shrink_to_fit();
    width_ = img.width;
    height_ = img.height;
    tiles_ = TileImage(img, opts_.tiles);
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    Napi::Array grid = Napi::Array::New(env, 2);
    grid.Set(0u, tiles_.grid.first);
    grid.Set(1u, tiles_.grid.second);
    o.Set("grid", grid);
    o.Set("tiles", tiles_.count);
    o.Set("width", width_);
    o.Set("height", height_);
    Napi::Float32Array data = Napi::Float32Array::New(env, tiles_.data.size());
    std::memcpy(data.Data(), tiles_.data.data(), tiles_.data.size() * sizeof(float));
    o.Set("data", data);
    return o;
  }

 private:
  std::vector<uint8_t> encoded_;
  RawFrame raw_;
  bool is_raw_;
  PreprocessOptions opts_;
  int width_ = 0, height_ = 0;
  Tiles tiles_;
};

class DecodeWorker : public PromiseWorker {
 public:
  DecodeWorker(Napi::Env env, std::vector<uint8_t> encoded, DecodeOptions opts)
      : PromiseWorker(env, "hovle.decodeImage"), encoded_(std::move(encoded)), opts_(opts) {}

 protected:
  void Run() override { img_ = DecodeImage(encoded_.data(), encoded_.size(), opts_); }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("width", img_.width);
    o.Set("height", img_.height);
    o.Set("data", Napi::Buffer<uint8_t>::Copy(env, img_.rgb.data(), img_.rgb.size()));
    return o;
  }

 private:
  std::vector<uint8_t> encoded_;
  DecodeOptions opts_;
  RgbImage img_;
};

}  // namespace

Napi::Value PreprocessImage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject()) {
    throw MakeError(env, "INVALID_ARGUMENT", "preprocessImage(input, options)");
  }
  Napi::Object in = info[0].As<Napi::Object>();
  Napi::Object o = info[1].As<Napi::Object>();
  PreprocessOptions opts;
  opts.tiles.min_tiles = IntAt(o, "minTiles", 1, 256);
  opts.tiles.max_tiles = IntAt(o, "maxTiles", opts.tiles.min_tiles, 256);
  opts.tiles.tile = IntAt(o, "tileSize", 1, 4096);
  opts.tiles.thumbnail = o.Get("thumbnail").ToBoolean();
  opts.decode.exif_orientation = o.Get("exifOrientation").ToBoolean();
  opts.decode.max_pixels = NumberAt(o, "maxPixels");
  Napi::Float32Array mean = o.Get("mean").As<Napi::Float32Array>();
  Napi::Float32Array stdv = o.Get("std").As<Napi::Float32Array>();
  if (mean.ElementLength() != 3 || stdv.ElementLength() != 3) throw MakeError(env, "INVALID_ARGUMENT", "mean and std need 3 values");
  for (int c = 0; c < 3; ++c) {
    opts.tiles.mean[c] = mean[c];
    opts.tiles.std[c] = stdv[c];
  }

  const std::string kind = in.Get("kind").ToString();
  std::vector<uint8_t> encoded;
  RawFrame raw;
  Napi::Value data = in.Get("data");
  if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw MakeError(env, "INVALID_ARGUMENT", "image data must be a Uint8Array or Buffer");
  }
  Napi::Uint8Array bytes = data.As<Napi::Uint8Array>();
  if (kind == "raw") {
    raw.width = IntAt(in, "width", 1, 1 << 20);
    raw.height = IntAt(in, "height", 1, 1 << 20);
    raw.channels = IntAt(in, "channels", 1, 4);
    raw.stride = IntAt(in, "stride", 1, INT32_MAX);
    raw.format = in.Get("format").ToString();
    if (opts.decode.max_pixels > 0 && static_cast<double>(raw.width) * raw.height > opts.decode.max_pixels) {
      throw MakeError(env, "IMAGE_TOO_LARGE", "the frame is " + std::to_string(raw.width) + "x" + std::to_string(raw.height) + ", over maxPixels");
    }
    const double need = static_cast<double>(raw.stride) * (raw.height - 1) + static_cast<double>(raw.width) * raw.channels;
    if (raw.stride < raw.width * raw.channels || static_cast<double>(bytes.ByteLength()) < need) {
      throw MakeError(env, "INVALID_ARGUMENT", "raw frame data is " + std::to_string(bytes.ByteLength()) + " bytes; " +
                                                   std::to_string(static_cast<long long>(need)) + " needed");
    }
    raw.data.assign(bytes.Data(), bytes.Data() + static_cast<size_t>(need));
  } else {
    encoded.assign(bytes.Data(), bytes.Data() + bytes.ByteLength());
  }
  auto* w = new PreprocessWorker(env, std::move(encoded), std::move(raw), kind == "raw", opts);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value DecodeImageJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsObject()) throw MakeError(env, "INVALID_ARGUMENT", "decodeImage(bytes, options)");
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  Napi::Object o = info[1].As<Napi::Object>();
  DecodeOptions opts;
  opts.max_pixels = NumberAt(o, "maxPixels");
  opts.exif_orientation = o.Get("exifOrientation").ToBoolean();
  auto* w = new DecodeWorker(env, std::vector<uint8_t>(bytes.Data(), bytes.Data() + bytes.ByteLength()), opts);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value ImageInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("jpegDecoder", JpegDecoderName());
  return o;
}

Napi::Value TargetRatiosJs(const Napi::CallbackInfo& info) {
  const int lo = info[0].As<Napi::Number>().Int32Value();
  const int hi = info[1].As<Napi::Number>().Int32Value();
  if (lo < 1 || hi < lo || hi > 256) throw MakeError(info.Env(), "INVALID_ARGUMENT", "1 <= min <= max <= 256");
  auto r = TargetRatios(lo, hi);
  Napi::Array a = Napi::Array::New(info.Env(), r.size());
  for (size_t i = 0; i < r.size(); ++i) {
    Napi::Array p = Napi::Array::New(info.Env(), 2);
    p.Set(0u, r[i].first);
    p.Set(1u, r[i].second);
    a.Set(i, p);
  }
  return a;
}

}  // namespace hovle
