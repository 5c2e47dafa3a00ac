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
#include <set>
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

class ThreadTask;

// The unsettled tasks of one JS environment: the main thread's, or a worker's. When a worker is
// terminated, V8 frees its arrays while a model thread may still read pinned pixels or write a
// logits buffer, and the task's settle call can no longer reach JS, so its model and context
// would never be freed. Close() (an environment cleanup hook, run before V8 frees anything)
// stops the tasks, waits for the slices running now, and releases what they hold; the tasks'
// small shells, holding handles of the dead environment, are left as they are.
class EnvTasks {
 public:
  // This environment's, created with a cleanup hook on first use.
  static std::shared_ptr<EnvTasks> Of(Napi::Env env);

  void Add(ThreadTask* task);
  // Before a slice: false once the environment is closing (the slice must not run).
  bool Enter();
  void Leave();
  // Runs `fn` (the settle call) unless the environment is closing; false if it did not.
  bool WhileOpen(const std::function<void()>& fn);
  bool closing();
  // Settled on the JS thread: the task is deleted next.
  void Remove(ThreadTask* task);

 private:
  void Close();

  std::mutex mutex_;
  std::condition_variable idle_;
  bool closing_ = false;
  int running_ = 0;
  std::set<ThreadTask*> live_;
};

// A unit of work for a TaskThread: Run() there, Result() back on the JS thread. Errors thrown by
// Run() reject the Promise with a HovleError carrying their code.
class ThreadTask {
 public:
  explicit ThreadTask(Napi::Env env);
  virtual ~ThreadTask();

  // For EnvTasks::Close(), on the JS thread, environment closing. Cancel(): make a running slice
  // end soon (set a cancel or stop flag); any thread may be in RunSlice meanwhile. DropNative():
  // release models, contexts and buffers; no slice runs or will run, and no Napi handle may be
  // touched (their environment is going away).
  virtual void Cancel() {}
  virtual void DropNative() {}

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
  // Queues the next slice, which runs only while the environment is open.
  void PostStep(TaskThread& thread);
  void Step(TaskThread& thread);
  void Settle(Napi::Env env);

  std::shared_ptr<EnvTasks> env_tasks_;
  Napi::Promise::Deferred deferred_;
  Napi::ThreadSafeFunction tsfn_;
  bool queued_ = false;
  bool failed_ = false;
  std::string code_;
  std::string message_;
};

}  // namespace hovle
