// libFuzzer target: the input bytes are an encoded image, run through the addon's worker-thread
// path for preprocessImage(): hovle::DecodeImage (libjpeg-turbo or stb_image, EXIF orientation)
// then hovle::TileImage (grid choice, PIL-exact bicubic resize, crop, thumbnail, normalise).
// Every input must either decode or throw hovle::Error; anything else is a finding.
//
// The pixel limit is lower than the addon's default (4 MP instead of 64 MP) and the tiles are
// small (28 px) so that each execution stays fast; the code paths are the same.
#include <cstdint>

#include "errors.h"
#include "image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  hovle::DecodeOptions decode;
  decode.max_pixels = 4 << 20;
  decode.exif_orientation = true;
  hovle::TileOptions tiles;
  tiles.tile = 28;
  tiles.max_tiles = 6;
  try {
    hovle::RgbImage img = hovle::DecodeImage(data, size, decode);
    hovle::Tiles t = hovle::TileImage(img, tiles);
    // Every normalised value must come from a pixel: finite, and within the mean/std range.
    for (float v : t.data) {
      if (!(v > -3.0f && v < 3.0f)) __builtin_trap();
    }
  } catch (const hovle::Error&) {
    // refused with a typed error: what must happen to a bad image
  }
  return 0;
}
