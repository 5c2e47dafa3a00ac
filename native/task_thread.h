// A dedicated native thread per model that runs everything touching its ggml backends (load,
// context creation, compute), one task at a time, settling a JS Promise for each.
//
// Why not libuv's pool: inference would occupy pool threads that file I/O and DNS need, and
// ggml's Vulkan backend on Mesa lavapipe corrupted the heap when successive calls arrived from
// different pool threads (measured: UV_THREADPOOL_SIZE 4 crashed, 1 and 2 did not). One owner
// thread per model serialises its sessions (queued, in call order) and keeps device work on the
// thread that created it.
#pragma once

#include <napi.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "errors.h"

namespace hovle {

class TaskThread {
 public:
  TaskThread();
  ~TaskThread();
  TaskThread(const TaskThread&) = delete;
  TaskThread& operator=(const TaskThread&) = delete;

  void Post(std::function<void()> fn);
  // Whether a task is queued behind the one running: a long task (a decode run) lets it go first.
  bool HasWaiting() const;

 private:
  // Shared with the thread itself, which may outlive this object (see the destructor).
  struct State {
    mutable std::mutex mutex;
    std::condition_variable cv;
    std::deque<std::function<void()>> queue;
    bool stop = false;
  };
  static void Loop(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
  std::thread thread_;
};

// A unit of work for a TaskThread: Run() there, Result() back on the JS thread. Errors thrown by
// Run() reject the Promise with a HovleError carrying their code.
class ThreadTask {
 public:
  explicit ThreadTask(Napi::Env env);
  virtual ~ThreadTask() = default;

  // Queues the task; returns its Promise. The task deletes itself once settled.
  Napi::Promise Queue(TaskThread& thread);

 protected:
  // The whole work; a task overrides this or RunSlice.
  virtual void Run() { throw Error("INTERNAL", "a task with nothing to run"); }
  // Does some of the work; false means "queue me again behind the tasks waiting now" (a long
  // task sharing the thread with other contexts' calls). The default does all of Run().
  virtual bool RunSlice() {
    Run();
    return true;
  }
  virtual Napi::Value Result(Napi::Env env) = 0;

 private:
  // One slice on the thread; re-posts itself until the task is done, then settles.
  void Step(TaskThread& thread);
  void Settle(Napi::Env env);

  Napi::Promise::Deferred deferred_;
  Napi::ThreadSafeFunction tsfn_;
  bool failed_ = false;
  std::string code_;
  std::string message_;
};

}  // namespace hovle
