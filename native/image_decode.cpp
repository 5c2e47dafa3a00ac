// Image decoding. JPEG goes through libjpeg-turbo when the build found it (the decoder PIL uses,
// so the golden pixels match exactly), else stb_image; PNG, BMP and GIF through stb_image.
// Dimensions are read and checked against the caller's pixel limit before any decoding.
#include <csetjmp>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>

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

void CheckSize(double w, double h, const DecodeOptions& opts) {
  if (w <= 0 || h <= 0) throw Error("IMAGE_INVALID", "the image has no pixels");
  if (opts.max_pixels > 0 && w * h > opts.max_pixels) {
    throw Error("IMAGE_TOO_LARGE", "the image is " + std::to_string(static_cast<long long>(w)) + "x" +
                                       std::to_string(static_cast<long long>(h)) + ", over the limit of " +
                                       std::to_string(static_cast<long long>(opts.max_pixels)) + " pixels (maxPixels)");
  }
}

// Header dimensions of PNG, GIF and BMP, read directly so that a decompression bomb is refused
// by size even where stb would only say "unknown image type". False when not recognised.
bool SniffSize(const uint8_t* d, size_t n, double* w, double* h) {
  auto be32 = [&](size_t o) { return (static_cast<uint32_t>(d[o]) << 24) | (d[o + 1] << 16) | (d[o + 2] << 8) | d[o + 3]; };
  auto le16 = [&](size_t o) { return static_cast<uint32_t>(d[o] | (d[o + 1] << 8)); };
  auto le32 = [&](size_t o) { return static_cast<int32_t>(d[o] | (d[o + 1] << 8) | (d[o + 2] << 16) | (static_cast<uint32_t>(d[o + 3]) << 24)); };
  if (n >= 24 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) {
    *w = be32(16);
    *h = be32(20);
    return true;
  }
  if (n >= 10 && std::memcmp(d, "GIF8", 4) == 0) {
    *w = le16(6);
    *h = le16(8);
    return true;
  }
  if (n >= 26 && d[0] == 'B' && d[1] == 'M') {
    *w = std::abs(static_cast<double>(le32(18)));
    *h = std::abs(static_cast<double>(le32(22)));
    return true;
  }
  return false;
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
      auto u16 = [&](size_t o) -> unsigned { return o + 2 > tn ? 0 : le ? t[o] | (t[o + 1] << 8) : (t[o] << 8) | t[o + 1]; };
      auto u32 = [&](size_t o) -> size_t {
        if (o + 4 > tn) return 0;
        return le ? t[o] | (t[o + 1] << 8) | (t[o + 2] << 16) | (static_cast<size_t>(t[o + 3]) << 24)
                  : (static_cast<size_t>(t[o]) << 24) | (t[o + 1] << 16) | (t[o + 2] << 8) | t[o + 3];
      };
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

// Returns false (and leaves `out` empty) for colour spaces PIL converts differently (CMYK).
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
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
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
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&cinfo);
  out.width = static_cast<int>(cinfo.output_width);
  out.height = static_cast<int>(cinfo.output_height);
  out.rgb.resize(static_cast<size_t>(out.width) * out.height * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = &out.rgb[static_cast<size_t>(cinfo.output_scanline) * out.width * 3];
    jpeg_read_scanlines(&cinfo, &row, 1);
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
  if (!done) {
    double sw = 0, sh = 0;
    if (SniffSize(data, size, &sw, &sh)) CheckSize(sw, sh, opts);
    int w = 0, h = 0, comp = 0;
    if (!stbi_info_from_memory(data, static_cast<int>(size), &w, &h, &comp)) {
      const std::string why = stbi_failure_reason();
      // stb refuses dimensions past its own limits while reading the header.
      if (why == "too large") throw Error("IMAGE_TOO_LARGE", "the image header declares dimensions too large to decode");
      throw Error("IMAGE_INVALID", "not a decodable JPEG, PNG, BMP or GIF image (" + why + ")");
    }
    CheckSize(w, h, opts);
    stbi_uc* px = stbi_load_from_memory(data, static_cast<int>(size), &w, &h, &comp, 3);
    if (px == nullptr) throw Error("IMAGE_INVALID", std::string("corrupt or truncated image: ") + stbi_failure_reason());
    img.width = w;
    img.height = h;
    img.rgb.assign(px, px + static_cast<size_t>(w) * h * 3);
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
