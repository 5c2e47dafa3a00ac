// The image pipeline: decode (or take a raw frame), InternVL dynamic tiling with PIL-exact
// bicubic resampling, and normalisation to CHW float tiles, all off the JS thread.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace hovle {

struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // row-major, 3 bytes per pixel
};

struct DecodeOptions {
  double max_pixels = 0;    // refuse larger images before decoding them
  bool exif_orientation = false;
};

// Encoded bytes (JPEG, PNG, BMP, GIF first frame) -> RGB. Alpha is dropped, not composited,
// as PIL's convert('RGB') does. Throws hovle::Error (IMAGE_INVALID, IMAGE_TOO_LARGE).
RgbImage DecodeImage(const uint8_t* data, size_t size, const DecodeOptions& opts);

// PIL's Image.resize(size, BICUBIC) on 8-bit RGB: separable, support widened when
// downscaling, 22-bit fixed-point coefficients, rounding and clamping after each pass.
RgbImage ResizeBicubic(const RgbImage& in, int out_w, int out_h);

// InternVL's candidate grids: the set {(i, j) : min <= i*j <= max} in CPython's set iteration
// order, then stably sorted by i*j, exactly as the reference builds it.
std::vector<std::pair<int, int>> TargetRatios(int min_tiles, int max_tiles);

// find_closest_aspect_ratio, tie rule included.
std::pair<int, int> ChooseGrid(int width, int height, int min_tiles, int max_tiles, int tile_size);

struct TileOptions {
  int min_tiles = 1;
  int max_tiles = 12;
  bool thumbnail = true;
  int tile = 448;
  float mean[3] = {0.485f, 0.456f, 0.406f};
  float std[3] = {0.229f, 0.224f, 0.225f};
};

struct Tiles {
  std::pair<int, int> grid{1, 1};  // columns, rows (the thumbnail is extra)
  int count = 0;                   // tiles including the thumbnail
  std::vector<float> data;         // [count][3][tile][tile], normalised
};

// InternVL's dynamic_preprocess + ToTensor + Normalize on a decoded image.
Tiles TileImage(const RgbImage& img, const TileOptions& opts);

// preprocessImage(input, options): Promise<{ grid: [cols, rows], tiles, width, height, data }>
Napi::Value PreprocessImage(const Napi::CallbackInfo& info);
// imageInfo(): { jpegDecoder }; targetRatios(min, max): the candidate grids in order.
Napi::Value ImageInfo(const Napi::CallbackInfo& info);
// decodeImage(bytes, {maxPixels, exifOrientation}): Promise<{ width, height, data: RGB Buffer }>
Napi::Value DecodeImageJs(const Napi::CallbackInfo& info);
Napi::Value TargetRatiosJs(const Napi::CallbackInfo& info);

}  // namespace hovle
