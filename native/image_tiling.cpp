// InternVL dynamic tiling: candidate grids in the reference's order, grid choice, resize, crop,
// thumbnail, normalisation.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "image.h"

namespace hovle {
namespace {

// CPython 3.11 (64-bit) hash of a 2-tuple of small non-negative ints (xxHash-based tuplehash).
uint64_t TupleHash(int64_t a, int64_t b) {
  const uint64_t p1 = 11400714785074694791ULL, p2 = 14029467366897019727ULL, p5 = 2870177450012600261ULL;
  uint64_t acc = p5;
  for (int64_t lane : {a, b}) {
    acc += static_cast<uint64_t>(lane) * p2;
    acc = (acc << 31) | (acc >> 33);
    acc *= p1;
  }
  acc += 2 ^ (p5 ^ 3527539ULL);
  if (acc == UINT64_MAX) return 1546275796ULL;
  return acc;
}

// The slot order CPython's set gives after inserting `items` in order (setobject.c: linear
// probes then perturbation; resize to 4x used when 3/5 full). Only the order is modelled.
std::vector<std::pair<int, int>> CPythonSetOrder(const std::vector<std::pair<int, int>>& items) {
  struct Slot {
    bool used = false;
    uint64_t hash = 0;
    std::pair<int, int> key;
  };
  constexpr size_t kLinearProbes = 9;
  constexpr int kPerturbShift = 5;
  std::vector<Slot> table(8);
  size_t fill = 0, used = 0;
  auto insert_clean = [](std::vector<Slot>& t, const Slot& s) {
    const size_t mask = t.size() - 1;
    uint64_t perturb = s.hash;
    size_t i = s.hash & mask;
    while (true) {
      if (!t[i].used) break;
      bool placed = false;
      if (i + kLinearProbes <= mask) {
        for (size_t j = 1; j <= kLinearProbes; ++j) {
          if (!t[i + j].used) {
            i += j;
            placed = true;
            break;
          }
        }
      }
      if (placed) break;
      perturb >>= kPerturbShift;
      i = (i * 5 + 1 + perturb) & mask;
    }
    t[i] = s;
  };
  for (const auto& key : items) {
    const uint64_t hash = TupleHash(key.first, key.second);
    bool present = false;
    {
      const size_t mask = table.size() - 1;
      uint64_t perturb = hash;
      size_t i = hash & mask;
      while (!present) {
        bool found_empty = false;
        for (size_t j = 0; j <= (i + kLinearProbes <= mask ? kLinearProbes : 0); ++j) {
          const Slot& s = table[i + j];
          if (!s.used) {
            found_empty = true;
            break;
          }
          if (s.hash == hash && s.key == key) {
            present = true;
            break;
          }
        }
        if (found_empty) break;
        perturb >>= kPerturbShift;
        i = (i * 5 + 1 + perturb) & mask;
      }
    }
    if (present) continue;
    insert_clean(table, Slot{true, hash, key});
    ++fill;
    ++used;
    if (fill * 5 >= (table.size() - 1) * 3) {
      const size_t minused = used > 50000 ? used * 2 : used * 4;
      size_t newsize = 8;
      while (newsize <= minused) newsize <<= 1;
      std::vector<Slot> bigger(newsize);
      for (const Slot& s : table) {
        if (s.used) insert_clean(bigger, s);
      }
      table.swap(bigger);
      fill = used;
    }
  }
  std::vector<std::pair<int, int>> out;
  for (const Slot& s : table) {
    if (s.used) out.push_back(s.key);
  }
  return out;
}

}  // namespace

std::vector<std::pair<int, int>> TargetRatios(int min_tiles, int max_tiles) {
  // target_ratios = set((i, j) for n in range(min, max + 1) for i in range(1, n + 1)
  //                     for j in range(1, n + 1) if min <= i * j <= max)
  std::vector<std::pair<int, int>> gen;
  for (int n = min_tiles; n <= max_tiles; ++n) {
    for (int i = 1; i <= n; ++i) {
      for (int j = 1; j <= n; ++j) {
        if (i * j <= max_tiles && i * j >= min_tiles) gen.emplace_back(i, j);
      }
    }
  }
  std::vector<std::pair<int, int>> order = CPythonSetOrder(gen);
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first * a.second < b.first * b.second; });
  return order;
}

std::pair<int, int> ChooseGrid(int width, int height, int min_tiles, int max_tiles, int tile_size) {
  const double aspect = static_cast<double>(width) / height;
  const double area = static_cast<double>(width) * height;
  double best_diff = INFINITY;
  std::pair<int, int> best{1, 1};
  for (const auto& r : TargetRatios(min_tiles, max_tiles)) {
    const double diff = std::fabs(aspect - static_cast<double>(r.first) / r.second);
    if (diff < best_diff) {
      best_diff = diff;
      best = r;
    } else if (diff == best_diff && area > 0.5 * tile_size * tile_size * r.first * r.second) {
      best = r;
    }
  }
  return best;
}

Tiles TileImage(const RgbImage& img, const TileOptions& opts) {
  Tiles out;
  const int S = opts.tile;
  out.grid = ChooseGrid(img.width, img.height, opts.min_tiles, opts.max_tiles, S);
  const int cols = out.grid.first, rows = out.grid.second;
  const int blocks = cols * rows;
  std::vector<RgbImage> tiles;
  {
    RgbImage resized = ResizeBicubic(img, S * cols, S * rows);
    for (int b = 0; b < blocks; ++b) {
      const int x0 = (b % cols) * S, y0 = (b / cols) * S;
      RgbImage t;
      t.width = t.height = S;
      t.rgb.resize(static_cast<size_t>(S) * S * 3);
      for (int y = 0; y < S; ++y) {
        std::memcpy(&t.rgb[static_cast<size_t>(y) * S * 3], &resized.rgb[(static_cast<size_t>(y0 + y) * resized.width + x0) * 3], static_cast<size_t>(S) * 3);
      }
      tiles.push_back(std::move(t));
    }
  }
  if (opts.thumbnail && blocks != 1) tiles.push_back(ResizeBicubic(img, S, S));
  out.count = static_cast<int>(tiles.size());
  out.data.resize(static_cast<size_t>(out.count) * 3 * S * S);
  // ToTensor (/255 in float32) then Normalize ((x - mean) / std in float32), as torchvision does.
  for (int t = 0; t < out.count; ++t) {
    for (int c = 0; c < 3; ++c) {
      float* dst = &out.data[(static_cast<size_t>(t) * 3 + c) * S * S];
      const uint8_t* src = tiles[t].rgb.data() + c;
      for (size_t i = 0; i < static_cast<size_t>(S) * S; ++i) {
        const float v = static_cast<float>(src[i * 3]) / 255.0f;
        dst[i] = (v - opts.mean[c]) / opts.std[c];
      }
    }
  }
  return out;
}

}  // namespace hovle
