#include "cpu_compute.h"

// ggml's backend interface: the wrapper below copies a CPU backend's and replaces two entries.
// Internal to ggml but from the same pinned source the addon links (CMakeLists.txt limits the
// include path to this file).
#include <ggml-backend-impl.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>

namespace hovle {
namespace {

struct Job {
  const std::function<void()>* fn;
  std::exception_ptr error;
  bool done = false;
};

// Leaked on purpose, thread included: a static destroyed at exit while the thread still waits
// on it would be undefined behaviour, and an idle thread blocked on a condition variable costs
// nothing until the process ends.
struct State {
  std::mutex mutex;
  std::condition_variable work, finished;
  std::deque<Job*> queue;
};

std::atomic<uint64_t> jobs_run{0};

State& Shared() {
  static State* state = [] {
    auto* s = new State();
    std::thread([s] {
      for (;;) {
        Job* job;
        {
          std::unique_lock<std::mutex> lock(s->mutex);
          s->work.wait(lock, [s] { return !s->queue.empty(); });
          job = s->queue.front();
          s->queue.pop_front();
        }
        jobs_run.fetch_add(1, std::memory_order_relaxed);
        try {
          (*job->fn)();
        } catch (...) {
          job->error = std::current_exception();
        }
        {
          std::lock_guard<std::mutex> lock(s->mutex);
          job->done = true;
        }
        s->finished.notify_all();
      }
    }).detach();
    return s;
  }();
  return *state;
}

// The wrapper: a ggml_backend first, so ggml's calls can be handed the struct as one.
struct ThreadHopBackend {
  ggml_backend base;
  ggml_backend_t cpu;
};
static_assert(std::is_standard_layout_v<ThreadHopBackend>);

ThreadHopBackend* Hop(ggml_backend_t b) { return reinterpret_cast<ThreadHopBackend*>(b); }

ggml_status HopGraphCompute(ggml_backend_t b, ggml_cgraph* graph) {
  ggml_backend_t cpu = Hop(b)->cpu;
  ggml_status status = GGML_STATUS_FAILED;
  RunOnCpuComputeThread([&] { status = cpu->iface.graph_compute(cpu, graph); });
  return status;
}

void HopFree(ggml_backend_t b) {
  ggml_backend_free(Hop(b)->cpu);
  delete Hop(b);
}

}  // namespace

uint64_t CpuComputeJobs() { return jobs_run.load(std::memory_order_relaxed); }

ggml_backend_t CpuBackendOnComputeThread(ggml_backend_t cpu) {
  std::unique_ptr<ggml_backend, decltype(&ggml_backend_free)> owned(cpu, &ggml_backend_free);
  // The copy keeps the CPU backend's guid, device and context, so ggml_backend_is_cpu and
  // ggml_backend_cpu_set_n_threads accept it, and the entries not replaced act on that context.
  auto* hop = new ThreadHopBackend{*cpu, owned.release()};
  hop->base.iface.graph_compute = HopGraphCompute;
  hop->base.iface.free = HopFree;
  return &hop->base;
}

void RunOnCpuComputeThread(const std::function<void()>& fn) {
  State& s = Shared();
  Job job{&fn};
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.queue.push_back(&job);
  }
  s.work.notify_one();
  {
    std::unique_lock<std::mutex> lock(s.mutex);
    s.finished.wait(lock, [&] { return job.done; });
  }
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace hovle
