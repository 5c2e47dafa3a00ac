// GGUF -> Model: every tensor the JS side expects is checked (present, dims, inside the file)
// before any weight memory is touched; then the weights are mapped (CPU, mmap) or copied into
// the device's buffer.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "errors.h"
#include "file_io.h"
#include "huge_pages.h"
#include "memory.h"
#include "ggml-cpu.h"
#include "gguf.h"
#include "gguf_check.h"
#include "model.h"

#ifndef _WIN32
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace hovle {
namespace {

void CheckSegment(const SegmentHParams& s, const char* what) {
  auto bad = [&](const std::string& m) { throw Error("GGUF_INVALID", std::string(what) + ": " + m); };
  if (s.n_layer <= 0 || s.n_embd <= 0 || s.n_ff <= 0 || s.n_head <= 0 || s.n_head_kv <= 0) bad("non-positive size");
  if (s.n_layer > 4096) bad("more than 4096 layers");
  if (s.n_embd % s.n_head != 0) bad("hidden size not divisible by heads");
  if (s.n_head % s.n_head_kv != 0) bad("heads not divisible by KV heads");
  if (s.head_dim() % 2 != 0) bad("odd head dimension");
  if (!(s.eps > 0) || !(s.rope_base > 0) || !(s.rope_factor > 0)) bad("eps, RoPE base and factor must be positive");
}

// The CPU's extra buffer type whose matmul kernels accept `w` (repacked layouts), or null.
// Asked the way llama.cpp asks: a MUL_MAT with the weight in a zero-size buffer of each type.
ggml_backend_buffer_type_t RepackBufferType(ggml_tensor* w) {
  ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
  if (cpu == nullptr || ggml_n_dims(w) != 2) return nullptr;
  auto get = reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(
      ggml_backend_reg_get_proc_address(ggml_backend_dev_backend_reg(cpu), "ggml_backend_dev_get_extra_bufts"));
  if (get == nullptr) return nullptr;
  ggml_init_params p{ggml_tensor_overhead() * 4, nullptr, true};
  ggml_context* c = ggml_init(p);
  ggml_tensor* x = ggml_new_tensor_2d(c, GGML_TYPE_F32, w->ne[0], 8);
  ggml_tensor* probe = ggml_new_tensor_2d(c, w->type, w->ne[0], w->ne[1]);
  ggml_tensor* op = ggml_mul_mat(c, probe, x);
  ggml_backend_buffer_type_t found = nullptr;
  for (ggml_backend_buffer_type_t* b = get(cpu); b != nullptr && *b != nullptr && found == nullptr; ++b) {
    ggml_backend_buffer_t buf = ggml_backend_buft_alloc_buffer(*b, 0);
    if (buf == nullptr) continue;
    probe->buffer = buf;
    if (ggml_backend_dev_supports_op(cpu, op)) found = *b;
    probe->buffer = nullptr;
    ggml_backend_buffer_free(buf);
  }
  ggml_free(c);
  return found;
}

bool IsMatmulWeight(const std::string& role) {
  static const char* const kRoles[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "output", "proj"};
  for (const char* r : kRoles) if (role == r) return true;
  return false;
}

// True when no element of an f32 or f16 tensor's bytes is NaN or infinite (exponent all ones).
bool AllFinite(const uint8_t* p, size_t nbytes, ggml_type type) {
  if (type == GGML_TYPE_F32) {
    for (size_t i = 0; i + 4 <= nbytes; i += 4) {
      uint32_t b;
      std::memcpy(&b, p + i, 4);
      if ((b & 0x7f800000u) == 0x7f800000u) return false;
    }
  } else if (type == GGML_TYPE_F16) {
    for (size_t i = 0; i + 2 <= nbytes; i += 2) {
      uint16_t b;
      std::memcpy(&b, p + i, 2);
      if ((b & 0x7c00u) == 0x7c00u) return false;
    }
  }
  return true;
}

#ifndef _WIN32
// Faults in the byte ranges `runs` ([begin, end) offsets, in any order, overlapping or not) of a
// read-only mapping, one read per page in file order, in 64 MiB steps; `step` gets the fraction
// done after each (and may throw to stop). A sequential walk lets the kernel's readahead work. Measured on Q8_0
// (2.5 GB) from a dropped page cache, alternating (this VM's disk varies 2x): 1.3-1.7 s; with
// MADV_WILLNEED on each step first 2.8-4.4 s, MAP_POPULATE 1.8 s, MADV_POPULATE_READ 1.5-2.6 s,
// and the last two left the mapping slow to walk again.
void PrefetchMapped(const uint8_t* base, std::vector<std::pair<size_t, size_t>> ranges, const std::function<void(double)>& step) {
  std::sort(ranges.begin(), ranges.end());
  std::vector<std::pair<size_t, size_t>> runs;
  for (const auto& r : ranges) {
    if (!runs.empty() && r.first <= runs.back().second) runs.back().second = std::max(runs.back().second, r.second);
    else runs.push_back(r);
  }
  double total = 0, done = 0;
  for (const auto& [b, e] : runs) total += static_cast<double>(e - b);
  if (total <= 0) return;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  constexpr size_t kChunk = size_t{64} << 20;
  volatile uint8_t sink = 0;
  for (const auto& [begin, end] : runs) {
    for (size_t at = begin / page * page; at < end; at += kChunk) {
      const size_t stop = std::min(end, at + kChunk);
      uint8_t acc = 0;
      for (size_t p = at; p < stop; p += page) acc ^= base[p];
      sink = sink ^ acc;
      done += static_cast<double>(stop - std::max(at, begin));
      step(done / total);
    }
  }
}
#endif

}  // namespace

Model::~Model() {
  for (ggml_backend_buffer_t b : buffers_) ggml_backend_buffer_free(b);
  for (ggml_context* c : owned_ctx_) ggml_free(c);
  if (meta_ctx_ != nullptr) ggml_free(meta_ctx_);
#ifndef _WIN32
  if (mapping_ != nullptr) munmap(mapping_, mapping_size_);
#endif
}

std::shared_ptr<Model> Model::Load(const std::string& path, const HParams& hp, const std::vector<TensorSpec>& specs,
                                   const LoadOptions& opts, const std::function<void(double, double)>& progress,
                                   const std::atomic<bool>& cancel) {
  CheckSegment(hp.emb, "embedding module");
  CheckSegment(hp.llm, "language model");
  if (hp.emb.n_embd != hp.llm.n_embd) throw Error("GGUF_INVALID", "embedding and LLM hidden sizes differ");
  if (hp.n_vocab <= 0 || hp.image_size <= 0 || hp.patch_size <= 0 || hp.image_size % hp.patch_size != 0) {
    throw Error("GGUF_INVALID", "invalid vocabulary or image geometry");
  }
  if (hp.n_channels != 3) throw Error("GGUF_INVALID", "images must have 3 channels");
  if (!(hp.downsample > 0 && hp.downsample <= 1) || hp.shuffle_factor() != 4 || hp.grid() % 2 != 0) {
    throw Error("GGUF_INVALID", "only a 0.5 pixel-shuffle ratio on an even patch grid is supported");
  }

  struct stat st {};
  if (stat(path.c_str(), &st) != 0) throw Error("IO_ERROR", "cannot stat " + path);
  const size_t file_size = static_cast<size_t>(st.st_size);

  auto model = std::make_shared<Model>();
  model->hp = hp;
  model->opts = opts;
  CheckGgufFile(path);  // before ggml's parser (gguf_check.h says why)
  gguf_init_params gp{/*no_alloc=*/true, &model->meta_ctx_};
  gguf_context* gguf = gguf_init_from_file(path.c_str(), gp);
  if (gguf == nullptr) throw Error("GGUF_INVALID", "ggml could not parse " + path);
  const size_t data_offset = gguf_get_data_offset(gguf);

  model->layers.resize(hp.emb.n_layer + hp.llm.n_layer);
  std::map<std::string, ggml_tensor**> global = {
      {"token_embd", &model->tok_embd}, {"patch_embd", &model->patch_w}, {"patch_bias", &model->patch_b},
      {"position_embd", &model->pos_embd}, {"output_norm", &model->out_norm}, {"output", &model->output},
  };
  struct Placed {
    ggml_tensor* t;  // metadata tensor from the file
    size_t off;      // absolute file offset
    std::string role;
    int block;
    ggml_tensor** slot;
  };
  std::vector<Placed> used;
  try {
    for (const TensorSpec& s : specs) {
      const int64_t id = gguf_find_tensor(gguf, s.name.c_str());
      if (id < 0) throw Error("GGUF_INVALID", path + ": tensor " + s.name + " is missing");
      ggml_tensor* t = ggml_get_tensor(model->meta_ctx_, s.name.c_str());
      for (int d = 0; d < GGML_MAX_DIMS; ++d) {
        const int64_t want = d < static_cast<int>(s.dims.size()) ? s.dims[d] : 1;
        if (t->ne[d] != want) {
          throw Error("GGUF_INVALID", path + ": tensor " + s.name + " has the wrong shape for these hyperparameters");
        }
      }
      const size_t off = data_offset + gguf_get_tensor_offset(gguf, id);
      if (off > file_size || ggml_nbytes(t) > file_size - off) {
        throw Error("GGUF_INVALID", path + ": tensor " + s.name + " runs past the end of the file (truncated?)");
      }
      ggml_tensor** slot = nullptr;
      if (s.block < 0) {
        if (s.role == "proj" || s.role == "proj_bias") {
          const bool second = s.name.find("fc2") != std::string::npos;
          slot = s.role == "proj" ? (second ? &model->fc2_w : &model->fc1_w) : (second ? &model->fc2_b : &model->fc1_b);
        } else if (auto it = global.find(s.role); it != global.end()) {
          slot = it->second;
        }
      } else if (s.block < static_cast<int>(model->layers.size())) {
        LayerWeights& l = model->layers[s.block];
        std::map<std::string, ggml_tensor**> per = {
            {"attn_norm", &l.attn_norm}, {"attn_q", &l.wq}, {"attn_k", &l.wk}, {"attn_v", &l.wv},
            {"attn_output", &l.wo}, {"ffn_norm", &l.ffn_norm}, {"ffn_gate", &l.ffn_gate}, {"ffn_up", &l.ffn_up},
            {"ffn_down", &l.ffn_down},
        };
        if (auto it = per.find(s.role); it != per.end()) slot = it->second;
      }
      if (slot == nullptr) throw Error("GGUF_INVALID", "tensor " + s.name + " has an unknown role " + s.role);
      if (*slot != nullptr) throw Error("GGUF_INVALID", "two tensors for role " + s.role + " of " + s.name);
      // 1-D and embedding-like tensors are read through paths (add/mul/get_rows) that need
      // float or well-known types; matmul weights may be any type the backend supports.
      *slot = t;
      used.push_back(Placed{t, off, s.role, s.block, slot});
    }
    for (ggml_tensor* t : {model->tok_embd, model->patch_w, model->patch_b, model->pos_embd, model->fc1_w,
                           model->fc1_b, model->fc2_w, model->fc2_b, model->out_norm, model->output}) {
      if (t == nullptr) throw Error("GGUF_INVALID", path + ": a global tensor is missing from the tensor list");
    }
    for (const LayerWeights& l : model->layers) {
      for (ggml_tensor* t : {l.attn_norm, l.wq, l.wk, l.wv, l.wo, l.ffn_norm, l.ffn_gate, l.ffn_up, l.ffn_down}) {
        if (t == nullptr) throw Error("GGUF_INVALID", path + ": a layer tensor is missing from the tensor list");
      }
    }
    // Element-wise ops (add, mul) only take float operands, and ggml aborts on anything else:
    // vectors must be f32/f16; every other tensor a float or block-quantized type.
    std::vector<ggml_tensor*> vectors = {model->patch_b, model->pos_embd, model->fc1_b, model->fc2_b, model->out_norm};
    for (const LayerWeights& l : model->layers) {
      vectors.push_back(l.attn_norm);
      vectors.push_back(l.ffn_norm);
    }
    for (ggml_tensor* t : vectors) {
      if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16) {
        throw Error("GGUF_INVALID", std::string(t->name) + " must be f32 or f16, not " + ggml_type_name(t->type));
      }
    }
    for (const Placed& u : used) {
      const ggml_type ty = u.t->type;
      if (ty == GGML_TYPE_I8 || ty == GGML_TYPE_I16 || ty == GGML_TYPE_I32 || ty == GGML_TYPE_I64 || ty == GGML_TYPE_F64) {
        throw Error("GGUF_INVALID", std::string(u.t->name) + " has type " + ggml_type_name(ty) + ", which no weight may have");
      }
    }
  } catch (...) {
    gguf_free(gguf);
    throw;
  }
  gguf_free(gguf);

  // A NaN or Inf in a norm weight, a bias or the position table silently poisons every
  // activation after it. Those tensors are small (a few MB for the 2B model), so they are read
  // and checked here; the matrices are not scanned (a full pass over a multi-GB file on every
  // load): the converter already refuses checkpoints with non-finite weights.
  // The one handle this load reads the file through (the scan here, then the copied weights).
  const File f = OpenForRead(path);
  std::vector<uint8_t> staging;
  for (const Placed& u : used) {
    static const char* const kScanned[] = {"attn_norm", "ffn_norm", "output_norm", "patch_bias", "proj_bias", "position_embd"};
    if (std::none_of(std::begin(kScanned), std::end(kScanned), [&](const char* r) { return u.role == r; })) continue;
    staging.resize(ggml_nbytes(u.t));
    ReadAt(f.get(), u.off, staging.data(), staging.size(), u.t->name, path);
    if (!AllFinite(staging.data(), staging.size(), u.t->type)) {  // f32 or f16, checked above
      throw Error("GGUF_INVALID", path + ": tensor " + u.t->name + " contains NaN or infinite values");
    }
  }

  model->device = ggml_backend_dev_by_name(opts.device.c_str());
  if (model->device == nullptr) throw Error("DEVICE_NOT_FOUND", "no ggml device named '" + opts.device + "'");
  const bool on_cpu = ggml_backend_dev_type(model->device) == GGML_BACKEND_DEVICE_TYPE_CPU;

  double total = 0;
  for (const Placed& u : used) total += static_cast<double>(ggml_nbytes(u.t));
  model->weight_bytes = static_cast<size_t>(total);

  // Placement: offloaded blocks are the top `gpu_layers` of the 32-layer stack; the token
  // table stays on the CPU (get_rows), the head goes along when every block is offloaded.
  const int n_blocks = hp.emb.n_layer + hp.llm.n_layer;
  const int gpu_layers = on_cpu ? 0 : (opts.gpu_layers < 0 || opts.gpu_layers > n_blocks ? n_blocks : opts.gpu_layers);
  model->layer_on_device.assign(n_blocks, false);
  for (int b = n_blocks - gpu_layers; b < n_blocks; ++b) model->layer_on_device[b] = true;
  std::vector<Placed*> cpu_set, dev_set;
  for (Placed& u : used) {
    bool dev = false;
    if (!on_cpu) {
      if (u.block >= 0) dev = model->layer_on_device[u.block];
      else if (u.role == "token_embd") dev = false;
      else if (u.role == "output" || u.role == "output_norm") dev = gpu_layers == n_blocks;
      else dev = opts.vision_on_device;
    }
    (dev ? dev_set : cpu_set).push_back(&u);
  }

  // Repacking rewrites the bytes, so those weights cannot be mapped: they are read and copied.
  std::map<ggml_backend_buffer_type_t, std::vector<Placed*>> repacked;
  if (opts.repack) {
    std::vector<Placed*> plain;
    for (Placed* e : cpu_set) {
      ggml_backend_buffer_type_t b = IsMatmulWeight(e->role) ? RepackBufferType(e->t) : nullptr;
      (b ? repacked[b] : plain).push_back(e);
    }
    cpu_set.swap(plain);
  }
#ifndef _WIN32
  // ggml wants a CPU buffer's base, and tensor data, on its buffer alignment (32 bytes): a file
  // whose general.alignment is smaller (legal GGUF) may put the data section or a tensor off it,
  // and mapping those aborts in ggml_backend_cpu_buffer_from_ptr. Such files are copied instead.
  const size_t cpu_align = ggml_backend_buft_get_alignment(ggml_backend_cpu_buffer_type());
  const bool aligned = data_offset % cpu_align == 0 &&
                       std::all_of(cpu_set.begin(), cpu_set.end(), [&](const Placed* e) { return e->off % cpu_align == 0; });
  const bool map_cpu = opts.mmap && !cpu_set.empty() && aligned;
#else
  const bool map_cpu = false;
#endif

  // Every set copied into memory of its own, as a context of tensors duplicated from the file's
  // (so each buffer holds exactly its set). Their sizes are checked against the memory
  // available before any of it is allocated.
  struct Upload {
    std::vector<Placed*>* set;
    ggml_backend_buffer_type_t buft;
    std::string where;
    bool host;
    ggml_context* ctx = nullptr;
    size_t bytes = 0;
  };
  std::vector<Upload> uploads;
  for (auto& [buft, set] : repacked) {
    for (Placed* e : set) model->repacked_bytes += ggml_nbytes(e->t);
    uploads.push_back({&set, buft, "the CPU (repacked weights)", true});
  }
  if (!map_cpu && !cpu_set.empty()) uploads.push_back({&cpu_set, ggml_backend_cpu_buffer_type(), "the CPU", true});
  if (!dev_set.empty()) uploads.push_back({&dev_set, ggml_backend_dev_buffer_type(model->device), opts.device, false});
  size_t host_bytes = 0, dev_bytes = 0;
  for (Upload& u : uploads) {
    ggml_init_params p{ggml_tensor_overhead() * (u.set->size() + 1), nullptr, true};
    u.ctx = ggml_init(p);
    model->owned_ctx_.push_back(u.ctx);
    for (Placed* e : *u.set) {
      ggml_tensor* d = ggml_dup_tensor(u.ctx, e->t);
      ggml_set_name(d, e->t->name);
      *e->slot = d;
    }
    u.bytes = ggml_backend_alloc_ctx_tensors_from_buft_size(u.ctx, u.buft);
    (u.host ? host_bytes : dev_bytes) += u.bytes;
  }
  if (host_bytes > 0) {
    std::string how = opts.mmap ? "" : "mmap: true (the default)";
    if (!repacked.empty()) how += std::string(how.empty() ? "" : " and ") + "repack: false";
    CheckMemory(nullptr, host_bytes, "copying " + FormatMiB(host_bytes) + " of weights into memory", opts.memory_limit,
                "Load with " + how + " to map the weights from the file instead of copying them");
  }
  if (dev_bytes > 0) {
    CheckMemory(model->device, dev_bytes, "the weights on " + opts.device, opts.memory_limit,
                on_cpu ? "" : "Offload fewer layers (gpuLayers)");
  }

  double done = 0;
  for (Upload& u : uploads) {
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors_from_buft(u.ctx, u.buft);
    if (buf == nullptr) {
      throw Error(u.host ? "OUT_OF_MEMORY" : "OUT_OF_DEVICE_MEMORY", "cannot allocate " + FormatMiB(u.bytes) + " of weights on " + u.where);
    }
    ggml_backend_buffer_set_usage(buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    model->buffers_.push_back(buf);
    if (u.host) AdviseHugePages(buf);
    for (Placed* e : *u.set) {
      if (cancel.load()) throw Error("ABORTED", "model loading was aborted");
      const size_t n = ggml_nbytes(e->t);
      staging.resize(n);
      ReadAt(f.get(), e->off, staging.data(), n, e->t->name, path);
      ggml_backend_tensor_set(*e->slot, staging.data(), 0, n);
      done += static_cast<double>(n);
      progress(done, total);
    }
  }

#ifndef _WIN32
  if (map_cpu) {
    const int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) throw Error("IO_ERROR", "cannot open " + path);
    void* addr = mmap(nullptr, file_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (addr == MAP_FAILED) throw Error("IO_ERROR", "cannot mmap " + path);
    model->mapping_ = addr;
    model->mapping_size_ = file_size;
    auto* base = static_cast<uint8_t*>(addr);
    ggml_backend_buffer_t buf = ggml_backend_cpu_buffer_from_ptr(base + data_offset, file_size - data_offset);
    if (buf == nullptr) throw Error("OUT_OF_MEMORY", "cannot wrap the mapped file in a ggml buffer");
    ggml_backend_buffer_set_usage(buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    model->buffers_.push_back(buf);
    std::vector<std::pair<size_t, size_t>> ranges;  // what prefetch reads
    double mapped = 0;
    for (Placed* e : cpu_set) {
      // PROT_READ mapping: ggml only reads weights, never writes them.
      if (ggml_backend_tensor_alloc(buf, e->t, base + e->off) != GGML_STATUS_SUCCESS) {
        throw Error("INTERNAL", std::string("cannot place ") + e->t->name);
      }
      mapped += static_cast<double>(ggml_nbytes(e->t));
      // The token table is read a row per token: most of it is never touched, and reading it
      // all would add its size (106 MB at Q4_0, 380 MB at F16) to the resident set for nothing.
      if (e->role != "token_embd") ranges.emplace_back(e->off, e->off + ggml_nbytes(e->t));
    }
    if (opts.prefetch) {
      // Read the mapped weights now, as llama.cpp does: otherwise load() returns before the disk
      // is read and the first answer faults gigabytes in, without progress or abort, in whatever
      // order its graph touches them. The pages stay the page cache's: nothing is copied. Only
      // the mapped tensors' own bytes: repacked ones lie between them in the file, and are copies.
      PrefetchMapped(base, std::move(ranges), [&](double fraction) {
        if (cancel.load()) throw Error("ABORTED", "model loading was aborted");
        progress(done + mapped * fraction, total);
      });
    }
    done += mapped;
  }
#endif
  progress(total, total);
  std::vector<uint8_t>().swap(staging);  // its capacity is the largest tensor copied
  ReleaseFreeHeap();
  return model;
}

}  // namespace hovle
