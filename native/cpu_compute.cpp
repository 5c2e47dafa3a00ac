#include "cpu_compute.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

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

}  // namespace

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
