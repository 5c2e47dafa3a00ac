// Image decoding. JPEG goes through libjpeg-turbo when the build found it (the decoder PIL uses,
// so the golden pixels match exactly), else stb_image; PNG, BMP and GIF through stb_image.
// Dimensions are read and checked against the caller's pixel limit before any decoding.
#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"
#include "image.h"

#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_NO_STDIO
#define STBI_MAX_DIMENSIONS (1 << 20)
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include "stb/stb_image.h"

#ifdef HOVLE_HAVE_LIBJPEG
#include <jpeglib.h>
#include <jerror.h>
#endif

namespace hovle {
namespace {

bool IsJpeg(const uint8_t* d, size_t n) { return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF; }

// What the decoders can take whatever maxPixels says: stb_image refuses a side over 2^20
// (STBI_MAX_DIMENSIONS; raw frames have the same limit) and a PNG over 2^30 bytes of samples.
constexpr double kMaxSide = 1 << 20;
constexpr double kMaxDecodePixels = 1 << 28;

void CheckSize(double w, double h, const DecodeOptions& opts) {
  if (w <= 0 || h <= 0) throw Error("IMAGE_INVALID", "the image has no pixels");
  if (w > kMaxSide || h > kMaxSide || w * h > kMaxDecodePixels) {
    throw Error("IMAGE_TOO_LARGE", "the image is " + std::to_string(static_cast<long long>(w)) + "x" +
                                       std::to_string(static_cast<long long>(h)) +
                                       ", more than the decoders accept (sides up to 1048576, 268435456 pixels)");
  }
  if (opts.max_pixels > 0 && w * h > opts.max_pixels) {
    throw Error("IMAGE_TOO_LARGE", "the image is " + std::to_string(static_cast<long long>(w)) + "x" +
                                       std::to_string(static_cast<long long>(h)) + ", over the limit of " +
                                       std::to_string(static_cast<long long>(opts.max_pixels)) + " pixels (maxPixels)");
  }
}

// Integers as the formats store them: PNG big-endian, GIF and BMP little-endian.
uint32_t Be32(const uint8_t* p) { return (static_cast<uint32_t>(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }
uint32_t Le16(const uint8_t* p) { return static_cast<uint32_t>(p[0] | (p[1] << 8)); }
uint32_t Le32(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24); }

// Header dimensions of PNG, GIF and BMP, read directly so that a decompression bomb is refused
// by size even where stb would only say "unknown image type". False when not recognised.
bool SniffSize(const uint8_t* d, size_t n, double* w, double* h) {
  if (n >= 24 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) {
    *w = Be32(d + 16);
    *h = Be32(d + 20);
    return true;
  }
  if (n >= 10 && std::memcmp(d, "GIF8", 4) == 0) {
    *w = Le16(d + 6);
    *h = Le16(d + 8);
    return true;
  }
  if (n >= 26 && d[0] == 'B' && d[1] == 'M') {
    *w = std::abs(static_cast<double>(static_cast<int32_t>(Le32(d + 18))));
    *h = std::abs(static_cast<double>(static_cast<int32_t>(Le32(d + 22))));
    return true;
  }
  return false;
}

// stb_image pads a BMP whose pixel data is cut short with zeros; PIL (the reference) refuses a
// truncated file, and so does this pipeline for every format. Uncompressed BMPs only (RLE and
// others are refused by stb anyway); the header fields were size-checked by SniffSize.
bool BmpTruncated(const uint8_t* d, size_t n) {
  if (n < 2 || d[0] != 'B' || d[1] != 'M') return false;
  if (n < 18) return true;
  const uint32_t header = Le32(d + 14);
  if (n - 14 < header) return true;  // the info header itself is cut
  if (header < 40) return false;
  const uint32_t offset = Le32(d + 10), bpp = Le16(d + 28), compression = Le32(d + 30);
  const int64_t w = static_cast<int32_t>(Le32(d + 18)), h = static_cast<int32_t>(Le32(d + 22));
  if ((compression != 0 && compression != 3) || w <= 0 || bpp == 0 || bpp > 32) return false;
  const uint64_t row = (static_cast<uint64_t>(w) * bpp + 31) / 32 * 4;
  return static_cast<uint64_t>(offset) + row * static_cast<uint64_t>(h < 0 ? -h : h) > n;
}

// A 16-bit BMP's channels: stb_image widens a level v of b bits by repeating its bits (5-bit 4
// becomes 33), PIL as v * 255 / (2^b - 1), truncated (32). Both keep v in the top b bits, so
// stb's output maps to PIL's through one table per channel width. `bits` holds the widths of
// R, G, B; none when the file is not a 16-bit BMP or its masks are not contiguous runs.
struct Bmp16Levels {
  bool valid = false;
  int bits[3] = {0, 0, 0};
};

Bmp16Levels ReadBmp16Levels(const uint8_t* d, size_t n) {
  Bmp16Levels b;
  if (n < 54 || d[0] != 'B' || d[1] != 'M') return b;
  if (Le32(d + 14) < 40 || Le16(d + 28) != 16) return b;
  const uint32_t compression = Le32(d + 30);
  uint32_t masks[3] = {0x7c00, 0x03e0, 0x001f};  // BI_RGB: 5-5-5
  if (compression == 3) {
    // BI_BITFIELDS: the masks follow a 40-byte header and are inside a larger one.
    if (n < 66) return b;
    for (int c = 0; c < 3; ++c) masks[c] = Le32(d + 54 + 4 * c);
  } else if (compression != 0) {
    return b;
  }
  for (int c = 0; c < 3; ++c) {
    uint32_t m = masks[c];
    if (m == 0 || m > 0xffff) return b;
    while ((m & 1) == 0) m >>= 1;
    int w = 0;
    for (; m & 1; m >>= 1) ++w;
    if (m != 0 || w > 8) return b;  // not one run, or wider than a byte: stb keeps no top bits
    b.bits[c] = w;
  }
  b.valid = true;
  return b;
}

void ToPilLevels(const Bmp16Levels& levels, std::vector<uint8_t>& rgb) {
  uint8_t table[3][256];
  for (int c = 0; c < 3; ++c) {
    const int w = levels.bits[c], top = (1 << w) - 1;
    for (int v = 0; v < 256; ++v) table[c][v] = static_cast<uint8_t>((v >> (8 - w)) * 255 / top);
  }
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = table[i % 3][rgb[i]];
}

// What PIL's RGB of a GIF's first frame takes from the palette where stb's differs: pixels of
// the transparent index (stb: black), and the canvas outside the first image (stb: the
// background colour; PIL: the transparent index, else index 0).
struct GifFill {
  bool valid = false;
  bool has_transparency = false;
  uint8_t transparent[3] = {0, 0, 0};  // the transparent index's colour
  uint8_t outside[3] = {0, 0, 0};      // the colour outside the first image
  int left = 0, top = 0, width = 0, height = 0;
};

struct GifFirstFrame {
  // stb_image decodes a GIF whose first image's data is cut short with the rest black; PIL
  // refuses it ("image file is truncated").
  bool truncated = false;
  GifFill fill;  // valid for a whole first image with a palette
};

// One walk of a GIF's blocks up to the end of its first image.
GifFirstFrame ReadGifFirstFrame(const uint8_t* d, size_t n) {
  GifFirstFrame g;
  if (n < 6 || std::memcmp(d, "GIF8", 4) != 0) return g;
  size_t p = 13;
  if (n < p) {
    g.truncated = true;
    return g;
  }
  const uint8_t* palette = nullptr;
  size_t palette_n = 0;
  if (d[10] & 0x80) {  // global colour table
    palette = d + 13;
    palette_n = size_t{1} << ((d[10] & 7) + 1);
    p += 3 * palette_n;
  }
  int tindex = -1;
  while (p < n && d[p] == 0x21) {  // extension: label, then sub-blocks
    // A graphic control extension with its transparency flag set.
    if (p + 7 < n && d[p + 1] == 0xF9 && d[p + 2] == 4 && (d[p + 3] & 1)) tindex = d[p + 6];
    p += 2;
    while (p < n && d[p] != 0) p += 1 + d[p];
    if (p >= n) {
      g.truncated = true;
      return g;
    }
    ++p;
  }
  if (p >= n) {
    g.truncated = true;
    return g;
  }
  if (d[p] != 0x2C) return g;  // a trailer before any image, or garbage: stb judges
  // The image descriptor, its local colour table, the LZW code size, then the data.
  if (p + 10 > n) {
    g.truncated = true;
    return g;
  }
  GifFill& f = g.fill;
  f.left = static_cast<int>(Le16(d + p + 1));
  f.top = static_cast<int>(Le16(d + p + 3));
  f.width = static_cast<int>(Le16(d + p + 5));
  f.height = static_cast<int>(Le16(d + p + 7));
  const uint8_t flags = d[p + 9];
  p += 10;
  if (flags & 0x80) {
    palette = d + p;
    palette_n = size_t{1} << ((flags & 7) + 1);
    p += 3 * palette_n;
  }
  p += 1;
  if (p > n) {
    g.truncated = true;
    return g;
  }
  // Sub-blocks that stop exactly at the end of the file (no terminator, no trailer) may hold
  // the whole LZW stream, and PIL decodes such a file; one cut inside is truncated.
  while (p < n && d[p] != 0) p += 1 + d[p];
  g.truncated = p > n;
  if (g.truncated || palette == nullptr) return g;
  auto colour = [&](int i, uint8_t* out) {
    if (i >= 0 && static_cast<size_t>(i) < palette_n) std::memcpy(out, palette + 3 * i, 3);
  };
  f.has_transparency = tindex >= 0;
  colour(tindex, f.transparent);
  colour(tindex >= 0 ? tindex : 0, f.outside);
  f.valid = true;
  return g;
}

// A 16-bit greyscale PNG (colour type 0, depth 16): PIL opens it as mode I;16 and its RGB
// conversion clamps each value to 255, where stb keeps the high byte.
bool IsGray16Png(const uint8_t* d, size_t n) {
  return n >= 26 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0 && std::memcmp(d + 12, "IHDR", 4) == 0 && d[24] == 16 && d[25] == 0;
}

// A copy of a PNG that stb_image would otherwise decode unlike PIL, or nothing when none is
// needed (or it is not a PNG). One walk over the chunks finds both repairs:
// - stb memcpy()s a first IDAT chunk of length 0 into its still-null buffer: undefined
//   behaviour (UBSan, found by scripts/fuzz.sh) that lets a compiler drop stb's later null
//   check ("no IDAT"). Empty IDAT chunks carry nothing, so the copy leaves them out.
// - chunks that end cleanly without IEND: PIL decodes the file, stb reads past the end for the
//   next chunk and fails. The copy ends with IEND. (A cut chunk is left for stb to refuse.)
std::vector<uint8_t> RepairedPng(const uint8_t* d, size_t n) {
  if (n < 8 || std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) != 0) return {};
  auto empty_idat = [&](size_t p) { return Be32(d + p) == 0 && std::memcmp(d + p + 4, "IDAT", 4) == 0; };
  bool has_empty_idat = false, has_iend = false;
  size_t p = 8;
  for (; p + 12 <= n && Be32(d + p) <= n - p - 12; p += 12 + Be32(d + p)) {
    has_empty_idat = has_empty_idat || empty_idat(p);
    has_iend = has_iend || std::memcmp(d + p + 4, "IEND", 4) == 0;
  }
  const bool add_iend = !has_iend && p == n;
  if (!has_empty_idat && !add_iend) return {};
  std::vector<uint8_t> out(d, d + 8);
  for (p = 8; p + 12 <= n && Be32(d + p) <= n - p - 12; p += 12 + Be32(d + p)) {
    if (!empty_idat(p)) out.insert(out.end(), d + p, d + p + 12 + Be32(d + p));
  }
  out.insert(out.end(), d + p, d + n);  // a malformed or cut tail, left for stb to judge
  static const uint8_t kIend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
  if (add_iend) out.insert(out.end(), kIend, kIend + 12);
  return out;
}

// EXIF orientation (tag 0x0112 in IFD0 of a JPEG's APP1 "Exif" segment); 1 when absent.
int ExifOrientation(const uint8_t* d, size_t n) {
  if (!IsJpeg(d, n)) return 1;
  size_t p = 2;
  while (p + 4 <= n && d[p] == 0xFF) {
    const uint8_t marker = d[p + 1];
    const size_t len = (static_cast<size_t>(d[p + 2]) << 8) | d[p + 3];
    if (marker == 0xDA || len < 2 || p + 2 + len > n) break;
    const uint8_t* seg = d + p + 4;
    const size_t seg_len = len - 2;
    if (marker == 0xE1 && seg_len >= 14 && std::memcmp(seg, "Exif\0\0", 6) == 0) {
      const uint8_t* t = seg + 6;
      const size_t tn = seg_len - 6;
      const bool le = t[0] == 'I' && t[1] == 'I';
      if (!le && !(t[0] == 'M' && t[1] == 'M')) return 1;
      auto u16 = [&](size_t o) -> unsigned { return o + 2 > tn ? 0 : le ? Le16(t + o) : (t[o] << 8) | t[o + 1]; };
      auto u32 = [&](size_t o) -> size_t { return o + 4 > tn ? 0 : le ? Le32(t + o) : Be32(t + o); };
      const size_t ifd = u32(4);
      const unsigned count = u16(ifd);
      for (unsigned i = 0; i < count; ++i) {
        const size_t e = ifd + 2 + 12 * static_cast<size_t>(i);
        if (e + 12 > tn) break;
        if (u16(e) == 0x0112) {
          const unsigned v = u16(e + 8);
          return v >= 1 && v <= 8 ? static_cast<int>(v) : 1;
        }
      }
      return 1;
    }
    p += 2 + len;
  }
  return 1;
}

RgbImage ApplyOrientation(const RgbImage& in, int o) {
  if (o == 1) return in;
  const int W = in.width, H = in.height;
  const bool swap = o >= 5;
  RgbImage out;
  out.width = swap ? H : W;
  out.height = swap ? W : H;
  out.rgb.resize(in.rgb.size());
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      int sx = x, sy = y;
      switch (o) {
        case 2: sx = W - 1 - x; break;
        case 3: sx = W - 1 - x; sy = H - 1 - y; break;
        case 4: sy = H - 1 - y; break;
        case 5: sx = y; sy = x; break;
        case 6: sx = y; sy = H - 1 - x; break;
        case 7: sx = W - 1 - y; sy = H - 1 - x; break;
        case 8: sx = W - 1 - y; sy = x; break;
      }
      std::memcpy(&out.rgb[(static_cast<size_t>(y) * out.width + x) * 3], &in.rgb[(static_cast<size_t>(sy) * W + sx) * 3], 3);
    }
  }
  return out;
}

#ifdef HOVLE_HAVE_LIBJPEG
struct JpegError {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void JpegErrorExit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->jump, 1);
}

// libjpeg only warns when the data ends early and pads the image with grey; PIL refuses such
// files ("image file is truncated"), so the truncation warning becomes an error here.
void JpegWarning(j_common_ptr cinfo, int msg_level) {
  if (msg_level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    auto* err = reinterpret_cast<JpegError*>(cinfo->err);
    std::snprintf(err->message, sizeof(err->message), "the file is truncated");
    longjmp(err->jump, 1);
  }
}

// PIL reads a CMYK (or YCCK, which libjpeg turns into CMYK) JPEG as inverted CMYK, Adobe's
// convention ("CMYK;I"), and its RGB conversion is cmyk2rgb in libImaging/Convert.c:
// nk = 255 - k, channel = nk - nk * c / 255 rounded as MULDIV255 does.
void CmykToRgbLikePil(const uint8_t* raw, uint8_t* rgb, size_t n) {
  auto muldiv255 = [](int a, int b) {
    const int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  for (size_t i = 0; i < n; ++i, raw += 4, rgb += 3) {
    const int nk = raw[3];  // 255 - (255 - raw): the inversion undone
    for (int c = 0; c < 3; ++c) rgb[c] = static_cast<uint8_t>(std::clamp(nk - muldiv255(255 - raw[c], nk), 0, 255));
  }
}

bool DecodeLibjpeg(const uint8_t* data, size_t size, const DecodeOptions& opts, RgbImage& out) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = JpegErrorExit;
  err.mgr.emit_message = JpegWarning;
  std::string failure;
  bool size_error = false;
  std::string size_message;
  if (setjmp(err.jump)) {
    failure = err.message;
    jpeg_destroy_decompress(&cinfo);
    throw Error("IMAGE_INVALID", "corrupt or truncated JPEG: " + failure);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  try {
    CheckSize(cinfo.image_width, cinfo.image_height, opts);
  } catch (const Error& e) {
    size_error = true;
    size_message = e.what();
  }
  if (size_error) {
    jpeg_destroy_decompress(&cinfo);
    throw Error("IMAGE_TOO_LARGE", size_message);
  }
  cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  out.width = static_cast<int>(cinfo.output_width);
  out.height = static_cast<int>(cinfo.output_height);
  out.rgb.resize(static_cast<size_t>(out.width) * out.height * 3);
  std::vector<uint8_t> cmyk_row(cmyk ? static_cast<size_t>(out.width) * 4 : 0);
  while (cinfo.output_scanline < cinfo.output_height) {
    const size_t y = cinfo.output_scanline;
    JSAMPROW row = cmyk ? cmyk_row.data() : &out.rgb[y * out.width * 3];
    jpeg_read_scanlines(&cinfo, &row, 1);
    if (cmyk) CmykToRgbLikePil(cmyk_row.data(), &out.rgb[y * out.width * 3], static_cast<size_t>(out.width));
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}
#endif

}  // namespace

RgbImage DecodeImage(const uint8_t* data, size_t size, const DecodeOptions& opts) {
  if (size == 0) throw Error("IMAGE_INVALID", "the image is empty");
  if (size > static_cast<size_t>(INT32_MAX)) throw Error("IMAGE_TOO_LARGE", "the encoded image is over 2 GiB");
  RgbImage img;
  bool done = false;
#ifdef HOVLE_HAVE_LIBJPEG
  if (IsJpeg(data, size)) done = DecodeLibjpeg(data, size, opts, img);
#endif
  std::vector<uint8_t> cleaned;  // outlives every use of `data` below
  if (!done) {
    cleaned = RepairedPng(data, size);
    if (!cleaned.empty()) {
      data = cleaned.data();
      size = cleaned.size();
    }
    double sw = 0, sh = 0;
    if (SniffSize(data, size, &sw, &sh)) CheckSize(sw, sh, opts);
    if (BmpTruncated(data, size)) throw Error("IMAGE_INVALID", "corrupt or truncated image: the BMP's pixel data is cut short");
    const GifFirstFrame first_frame = ReadGifFirstFrame(data, size);
    if (first_frame.truncated) throw Error("IMAGE_INVALID", "corrupt or truncated image: the GIF's first image is cut short");
    int w = 0, h = 0, comp = 0;
    if (!stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &comp)) {
      const std::string why = stbi_failure_reason();
      // stb refuses dimensions past its own limits while reading the header.
      if (why == "too large") throw Error("IMAGE_TOO_LARGE", "the image header declares dimensions too large to decode");
      throw Error("IMAGE_INVALID", "not a decodable JPEG, PNG, BMP or GIF image (" + why + ")");
    }
    // stb reports a top-down BMP's height as negative here (its loader flips the sign).
    CheckSize(std::abs(static_cast<double>(w)), std::abs(static_cast<double>(h)), opts);
    const bool gray16 = IsGray16Png(data, size);
    const GifFill& gif = first_frame.fill;
    // A GIF decodes with alpha, which tells its transparent pixels apart.
    void* px = gray16 ? static_cast<void*>(stbi_load_16_from_memory(data, static_cast<int>(size), &w, &h, &comp, 1))
                      : static_cast<void*>(stbi_load_from_memory(data, static_cast<int>(size), &w, &h, &comp, gif.valid ? 4 : 3));
    if (px == nullptr) {
      // Typed like the header check above: a size stb cannot decode is not a corrupt file.
      const std::string why = stbi_failure_reason() ? stbi_failure_reason() : "";
      if (why == "too large") throw Error("IMAGE_TOO_LARGE", "the image is too large to decode");
      if (why == "outofmem") throw Error("OUT_OF_MEMORY", "out of memory decoding the image");
      // stb builds some reasons from the file's bytes, which can make them empty.
      throw Error("IMAGE_INVALID", "corrupt or truncated image" + (why.empty() || why[0] == '\0' ? std::string() : ": " + why));
    }
    img.width = w;
    img.height = h;
    const size_t n_px = static_cast<size_t>(w) * h;
    if (gray16) {
      const auto* v = static_cast<const uint16_t*>(px);
      img.rgb.resize(n_px * 3);
      for (size_t i = 0; i < n_px; ++i) {
        const uint8_t g = static_cast<uint8_t>(std::min<uint16_t>(v[i], 255));
        img.rgb[3 * i] = img.rgb[3 * i + 1] = img.rgb[3 * i + 2] = g;
      }
    } else if (gif.valid) {
      const auto* rgba = static_cast<const stbi_uc*>(px);
      img.rgb.resize(n_px * 3);
      for (int y = 0; y < h; ++y) {
        const bool row_in = y >= gif.top && y < gif.top + gif.height;
        for (int x = 0; x < w; ++x) {
          const size_t i = static_cast<size_t>(y) * w + x;
          const uint8_t* src = rgba + 4 * i;
          if (!(row_in && x >= gif.left && x < gif.left + gif.width)) src = gif.outside;
          else if (gif.has_transparency && rgba[4 * i + 3] == 0) src = gif.transparent;
          std::memcpy(&img.rgb[3 * i], src, 3);
        }
      }
    } else {
      const auto* rgb = static_cast<const stbi_uc*>(px);
      img.rgb.assign(rgb, rgb + n_px * 3);
      const Bmp16Levels bmp16 = ReadBmp16Levels(data, size);
      if (bmp16.valid) ToPilLevels(bmp16, img.rgb);
    }
    stbi_image_free(px);
  }
  if (opts.exif_orientation) img = ApplyOrientation(img, ExifOrientation(data, size));
  return img;
}

const char* JpegDecoderName() {
#ifdef HOVLE_HAVE_LIBJPEG
  return "libjpeg-turbo";
#else
  return "stb_image";
#endif
}

}  // namespace hovle
