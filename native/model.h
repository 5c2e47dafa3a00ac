// The HoVLE model in native memory: hyperparameters in one struct, weights grouped by role,
// and a context (KV caches + scheduler) that runs the graph stages.
//
// Tensor names never appear in C++: the JS side reads the GGUF with the schema table
// (src/model/schema.ts) and hands over {name, role, block, dims} for every tensor; the loader
// checks each against the file and files the pointer under its role.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"
#include "task_thread.h"

namespace hovle {

// Set from JS (an AbortSignal, cancel_flag.h), read on the model's thread between graphs.
using CancelFlag = std::shared_ptr<const std::atomic<bool>>;

struct SegmentHParams {
  int n_layer = 0;
  int n_embd = 0;
  int n_ff = 0;
  int n_head = 0;
  int n_head_kv = 0;
  float eps = 1e-5f;
  float rope_base = 10000.0f;
  int rope_scaling = 0;  // 0 none, 1 linear, 2 dynamic NTK
  float rope_factor = 1.0f;
  int n_ctx_train = 0;

  int head_dim() const { return n_embd / n_head; }
};

struct HParams {
  int n_vocab = 0;
  SegmentHParams emb;
  SegmentHParams llm;
  int image_size = 448;
  int patch_size = 14;
  int n_channels = 3;
  float downsample = 0.5f;
  bool post = false;            // pixel_shuffle_loc == "post"
  bool normalize_output = false;
  int img_context_id = -1;

  int grid() const { return image_size / patch_size; }
  int patches_per_tile() const { return grid() * grid(); }
  // Floats of one tile's CHW pixels.
  size_t tile_floats() const { return static_cast<size_t>(n_channels) * image_size * image_size; }
  int shuffle_factor() const { return static_cast<int>(1.0f / (downsample * downsample) + 0.5f); }
  int tokens_per_tile() const { return patches_per_tile() / shuffle_factor(); }
};

struct LayerWeights {
  ggml_tensor* attn_norm = nullptr;
  ggml_tensor* wq = nullptr;
  ggml_tensor* wk = nullptr;
  ggml_tensor* wv = nullptr;
  ggml_tensor* wo = nullptr;
  ggml_tensor* ffn_norm = nullptr;
  ggml_tensor* ffn_gate = nullptr;
  ggml_tensor* ffn_up = nullptr;
  ggml_tensor* ffn_down = nullptr;
};

struct TensorSpec {
  std::string name;
  std::string role;
  int block = -1;  // global block index, -1 for global tensors
  std::vector<int64_t> dims;
};

struct LoadOptions {
  std::string device = "CPU";  // ggml device for offloaded weights
  bool mmap = true;            // CPU-resident weights are mapped from the file
  // Mapped weights are read in at load (as llama.cpp's MAP_POPULATE), not at the first compute.
  bool prefetch = true;
  int gpu_layers = -1;         // decoder blocks (counted from the top) on the device; -1: all
  bool vision_on_device = true;  // patch/position embeddings and projection on the device
  // CPU matmul weights go into ggml's repacked layouts (e.g. Q4_0/Q4_K as 8x8 interleaved
  // blocks on AVX2), as llama.cpp does by default: faster kernels, at the price of a copy.
  bool repack = true;
  // HOVLE_MEMORY_LIMIT_BYTES (memory.h): caps the memory considered available; 0: none.
  uint64_t memory_limit = 0;
};

class Model {
 public:
  ~Model();

  HParams hp;
  LoadOptions opts;
  // Global tensors.
  ggml_tensor* tok_embd = nullptr;
  ggml_tensor* patch_w = nullptr;
  ggml_tensor* patch_b = nullptr;
  ggml_tensor* pos_embd = nullptr;
  ggml_tensor* fc1_w = nullptr;
  ggml_tensor* fc1_b = nullptr;
  ggml_tensor* fc2_w = nullptr;
  ggml_tensor* fc2_b = nullptr;
  ggml_tensor* out_norm = nullptr;
  ggml_tensor* output = nullptr;
  std::vector<LayerWeights> layers;  // embedding layers first, then the LLM's

  ggml_backend_dev_t device = nullptr;
  size_t weight_bytes = 0;
  size_t repacked_bytes = 0;  // of weight_bytes, held in repacked CPU layouts
  std::vector<bool> layer_on_device;  // per global block
  // Runs every task touching this model's backends (task_thread.h). Contexts and in-flight
  // tasks hold the Model, and with it this thread.
  std::shared_ptr<TaskThread> thread;

  const SegmentHParams& seg(bool llm) const { return llm ? hp.llm : hp.emb; }
  int first_block(bool llm) const { return llm ? hp.emb.n_layer : 0; }

  // Loads and validates; throws hovle::Error. `progress(done, total)` may be called from this
  // thread; `cancel` is polled between tensors.
  static std::shared_ptr<Model> Load(const std::string& path, const HParams& hp, const std::vector<TensorSpec>& specs,
                                     const LoadOptions& opts, const std::function<void(double, double)>& progress,
                                     const std::atomic<bool>& cancel);

 private:
  ggml_context* meta_ctx_ = nullptr;
  std::vector<ggml_context*> owned_ctx_;
  std::vector<ggml_backend_buffer_t> buffers_;
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
};

enum class KvType { F32, F16, Q8_0 };

struct ContextOptions {
  int n_ctx_emb = 4096;
  int n_ctx_llm = 4096;
  KvType kv_type = KvType::F16;
  bool flash_attn = true;
  int n_batch = 512;
  int threads = 1;  // the facade passes DefaultComputeThreads() (cpu_threads.h) unless told
  uint64_t memory_limit = 0;  // as LoadOptions::memory_limit
};

// A try-only lock for Context::busy (std::unique_lock with std::try_to_lock). Not a std::mutex:
// a decode run holds it across its slices, and a try_lock from the thread that already owns a
// std::mutex is undefined; here it simply fails.
class BusyFlag {
 public:
  bool try_lock() { return !held_.exchange(true, std::memory_order_acquire); }
  void unlock() { held_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> held_{false};
};

// One conversation's state: a KV cache per segment and a scheduler. Calls must not overlap
// (the JS layer queues them); `busy` turns a violation into an error instead of corruption.
class Context {
 public:
  Context(std::shared_ptr<Model> model, const ContextOptions& opts);
  ~Context();

  // Vision front end over tiles of CHW float pixels (one pointer per tile, so several images need
  // no concatenation). pre: shuffle + MLP, writes [n_tiles*tokens_per_tile, H]; post: conv +
  // position only, writes [n_tiles*patches, H]; `out` holds VisionFloats(n_tiles, project).
  // `cancel` (optional, as for Forward) is read before each graph.
  void Vision(const std::vector<const float*>& tiles, bool project, float* out, const CancelFlag& cancel = nullptr);
  size_t VisionFloats(int n_tiles, bool project) const;
  // Pixel shuffle + MLP of [n_tiles*patches, H] rows (post mode, after the embedding layers).
  std::vector<float> ShuffleProject(const float* rows, int n_tiles);
  // Embedding module over ids appended at position n_past(emb); IMG_CONTEXT ids take the next
  // image row. Returns [n, H].
  std::vector<float> Embed(const int32_t* ids, int n, const float* image_rows, int n_image_rows);
  // LLM over input rows [n, H] appended at n_past(llm). Returns logits [n_out, V] for the
  // requested row indices (all rows when out_rows is empty).
  std::vector<float> Llm(const float* rows, int n, const std::vector<int32_t>& out_rows);
  // Embed and Llm fused: each micro-batch runs the 8 embedding layers and the 24 LLM layers as one
  // graph, so the hidden rows never leave the compute buffer and a decode step is one graph.
  // Rows map one-to-one, so not for images in "post" mode (their rows change count in between).
  // With `logits_out` (room for the requested rows), the logits are written there and the
  // returned vector is empty. With `picks_out` instead, each requested row's argmax is taken in
  // the graph (on the device) and written there, and no logits leave it: greedy decoding on a
  // GPU then reads back 4 bytes a step instead of the 370 KB row.
  // `cancel`, once set, ends the call before its next micro-batch with ABORTED, the cache as it
  // was before the call.
  std::vector<float> Forward(const int32_t* ids, int n, const float* image_rows, int n_image_rows,
                             const std::vector<int32_t>& out_rows, float* logits_out = nullptr,
                             int32_t* picks_out = nullptr, const CancelFlag& cancel = nullptr);

  int hidden() const { return model_->hp.emb.n_embd; }
  TaskThread& task_thread() const { return *model_->thread; }
  const std::shared_ptr<Model>& model() const { return model_; }
  int n_past(bool llm) const { return llm ? n_past_llm_ : n_past_emb_; }
  int n_ctx(bool llm) const { return llm ? opts_.n_ctx_llm : opts_.n_ctx_emb; }
  void Truncate(bool llm, int n);
  // Copies `other`'s cached positions (same model and cache layout) into this context.
  void CopyCacheFrom(const Context& other);
  const ContextOptions& options() const { return opts_; }
  // Bytes of the KV caches, and of the compute buffers: measured at creation for the largest
  // graphs (prefill at a full context, kTilesPerGraph image tiles), more if a graph grew them.
  size_t kv_bytes() const { return kv_bytes_; }
  size_t compute_bytes() const { return compute_bytes_; }

  BusyFlag busy;

 private:
  struct Kv {
    std::vector<ggml_tensor*> k, v;
  };
  // A segment's inputs for one batch appended at n_past: position ids [n_tokens], the cache rows
  // it is written to [n_tokens] (I64), and the causal mask [n_kv, n_tokens] over the first n_kv
  // cache rows. n_kv is padded (KvSpan), so from one decode step to the next the graph keeps its
  // shapes and addresses and only these inputs' contents change.
  struct BatchInputs {
    ggml_tensor *pos, *rows, *mask;
    int n_kv;
  };
  BatchInputs NewBatchInputs(ggml_context* ctx, bool llm, int n_tokens, int n_past) const;
  // Cache rows attention reads for a batch ending at position n_end: n_end rounded up to
  // kKvPad, within the cache's rows.
  int KvSpan(bool llm, int n_end) const;
  ggml_tensor* BuildSegment(ggml_context* ctx, ggml_tensor* cur, bool llm, int n_tokens, int n_past,
                            const BatchInputs& in);
  ggml_tensor* BuildAttention(ggml_context* ctx, ggml_tensor* x, const LayerWeights& w, const SegmentHParams& s,
                              const Kv& kv, int layer, int n_tokens, int n_past, const BatchInputs& in);
  ggml_tensor* BuildShuffleProject(ggml_context* ctx, ggml_tensor* patches, int n_tiles);
  // Whole graphs of each stage, their input tensors unset: run by the stages, and built at
  // creation to measure the compute buffers before anything is allocated for them.
  struct VisionGraph {
    ggml_tensor* inp;
    ggml_tensor* out;
  };
  struct EmbedGraph {
    ggml_tensor *tid, *img, *merge, *out;
    BatchInputs in;
  };
  struct HeadGraph {
    ggml_tensor* out;   // the logits (scratch when picking)
    ggml_tensor* pick;  // their argmax per row, when asked for
  };
  struct LlmGraph {
    ggml_tensor *inp, *sel;  // sel null when no logits are wanted
    HeadGraph head;          // the logits in this graph: null past logit_rows_ rows
    // Instead of head, for more rows than one graph computes logits for: the final hidden rows
    // (normed), whose logits head graphs compute (ReadLogits).
    ggml_tensor* hidden;
    BatchInputs in;
  };
  VisionGraph BuildVisionGraph(ggml_context* ctx, ggml_cgraph* gf, int n_tiles, bool project);
  VisionGraph BuildShuffleProjectGraph(ggml_context* ctx, ggml_cgraph* gf, int n_tiles);
  // `output`: the result is read back (false when the fused forward feeds it to the LLM).
  EmbedGraph BuildEmbedGraph(ggml_context* ctx, ggml_cgraph* gf, int n_tokens, int n_img, int n_past, bool output = true);
  // `input`: the rows fed to the LLM, a tensor of the graph (the fused forward) or, when null,
  // a new input tensor (g.inp). `pick`: the graph ends in the argmax of each logits row.
  LlmGraph BuildLlmGraph(ggml_context* ctx, ggml_cgraph* gf, int n_tokens, int n_past, int n_out,
                         ggml_tensor* input = nullptr, bool pick = false);
  // The output head over normed hidden rows [n_embd, n_rows]: logits, or their argmax.
  HeadGraph BuildHead(ggml_context* ctx, ggml_cgraph* gf, ggml_tensor* hidden, bool pick);
  // Reads a computed LLM graph's logits (or picks, when `picks` is given) into the host arrays,
  // running head graphs when the graph stopped at the hidden rows.
  void ReadLogits(const LlmGraph& l, float* logits, int32_t* picks);
  // Checks shared by the stage runners; throw hovle::Error.
  void CheckRoom(bool llm, int n) const;
  // Ids inside the vocabulary, as many IMG_CONTEXT ids as image rows.
  void CheckIds(const int32_t* ids, int n, int n_image_rows) const;
  std::vector<int32_t> WantedRows(const std::vector<int32_t>& out_rows, int n) const;
  void SetEmbedInputs(const EmbedGraph& e, const int32_t* ids, int nb, const float* image_rows, int n_past);
  void SetLlmInputs(const LlmGraph& l, const float* rows, int nb, int n_past, const std::vector<int32_t>& sel);
  // Positions n_past.., their cache rows and the causal mask of a batch of nb appended at n_past.
  void SetPositions(const BatchInputs& in, int nb, int n_past);
  // Compute-buffer bytes per scheduler backend (device first when there is one) for the
  // largest graphs this context will run. With `reserve`, allocates sched_'s buffers for those
  // graphs instead (and returns nothing).
  std::vector<size_t> MeasureCompute(bool reserve = false);
  // Allocates a graph's compute buffers; when they grew past what was checked, checks the
  // growth against the memory available first.
  void AllocGraph(ggml_cgraph* graph, const char* what);
  // The fused forward's graph for a batch of nb ids without image rows at the current positions,
  // with n_out rows of logits (or their argmax): kept_ when it matches, else built, allocated
  // and kept.
  ggml_cgraph* KeptForwardGraph(int nb, int n_out, bool pick);
  void Compute(ggml_cgraph* graph);
  void Init();
  void Release();
  float RopeBase(const SegmentHParams& s, int n_total) const;

  std::shared_ptr<Model> model_;
  ContextOptions opts_;
  ggml_backend_t backend_ = nullptr;      // device backend (may be the CPU one)
  ggml_backend_t cpu_backend_ = nullptr;  // always present for the scheduler
  ggml_backend_sched_t sched_ = nullptr;
  std::vector<ggml_context*> kv_ctx_;
  std::vector<ggml_backend_buffer_t> kv_buf_;
  Kv kv_emb_, kv_llm_;
  // Atomic: the JS thread reads them (nPast) while a decode run advances them.
  std::atomic<int> n_past_emb_{0};
  std::atomic<int> n_past_llm_{0};
  std::vector<uint8_t> graph_mem_;
  size_t kv_bytes_ = 0;
  std::atomic<size_t> compute_bytes_{0};  // read by the JS thread
  std::vector<size_t> compute_checked_;  // per scheduler backend, bytes known to fit
  ggml_cgraph* pending_graph_ = nullptr;  // the graph being built (KV writes are expanded into it)
  // The last fused-forward graph without image rows, kept built and allocated: a call with the
  // same shapes (every decode step, for kKvPad tokens at a time) only sets its inputs and
  // computes it again, skipping the graph build and the scheduler's allocation. Valid while no
  // other graph has been allocated since (epoch).
  struct KeptForward {
    // Not a zero-filled vector: ggml writes only the headers of the graph's tensors (~0.4 MB of
    // the 3 MB reserved), so the rest of the pages are never touched and never resident.
    std::unique_ptr<uint8_t[]> mem;
    ggml_context* ctx = nullptr;
    ggml_cgraph* gf = nullptr;
    EmbedGraph e{};
    LlmGraph l{};
    int nb = 0, n_out = 0, n_kv_emb = 0, n_kv_llm = 0;
    bool pick = false;
    float base_emb = 0.0f, base_llm = 0.0f;
    int at = -1, at_emb = -1;  // the positions, where the graph depends on them (no flash attention)
    uint64_t epoch = 0;
  } kept_;
  uint64_t alloc_epoch_ = 0;  // scheduler allocations so far
  bool host_compute_ = true;  // some layers compute on the CPU (their buffers are host memory)
  int logit_rows_ = 0;        // most rows of logits one graph computes (kLogitRowsPerGraph)
  std::vector<uint8_t> head_graph_mem_;  // ReadLogits' head graphs
  std::vector<ggml_fp16_t> mask_;         // host staging for the attention masks
};

}  // namespace hovle
