#include "task_thread.h"

#include <vector>

#include "addon_data.h"

namespace hovle {

TaskThread::TaskThread() : state_(std::make_shared<State>()), thread_(Loop, state_) {}

TaskThread::~TaskThread() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop = true;
  }
  state_->cv.notify_all();
  // The last reference can be dropped by a task running on this very thread (a context freed
  // when its final call completes); joining itself would deadlock, so it detaches then.
  if (thread_.get_id() == std::this_thread::get_id()) {
    thread_.detach();
  } else if (thread_.joinable()) {
    thread_.join();
  }
}

void TaskThread::Post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->queue.push_back(std::move(fn));
  }
  state_->cv.notify_one();
}

bool TaskThread::HasWaiting() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return !state_->queue.empty();
}

void TaskThread::Loop(std::shared_ptr<State> state) {
  while (true) {
    std::function<void()> fn;
    {
      std::unique_lock<std::mutex> lock(state->mutex);
      state->cv.wait(lock, [&] { return state->stop || !state->queue.empty(); });
      if (state->queue.empty()) return;  // stopping and drained
      fn = std::move(state->queue.front());
      state->queue.pop_front();
    }
    fn();
  }
}

std::shared_ptr<EnvTasks> EnvTasks::Of(Napi::Env env) {
  AddonData& data = AddonData::Get(env);
  if (!data.tasks) {
    data.tasks = std::make_shared<EnvTasks>();
    // Its own reference: AddonData goes with the environment's other finalizers, after this.
    auto* held = new std::shared_ptr<EnvTasks>(data.tasks);
    napi_status status = napi_add_env_cleanup_hook(env, [](void* arg) {
      auto* tasks = static_cast<std::shared_ptr<EnvTasks>*>(arg);
      (*tasks)->Close();
      delete tasks;
    }, held);
    if (status != napi_ok) {
      delete held;
      throw Error("INTERNAL", "cannot register the environment cleanup hook");
    }
  }
  return data.tasks;
}

void EnvTasks::Add(ThreadTask* task) {
  std::lock_guard<std::mutex> lock(mutex_);
  live_.insert(task);
}

bool EnvTasks::Enter() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closing_) return false;
  ++running_;
  return true;
}

void EnvTasks::Leave() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    --running_;
  }
  idle_.notify_all();
}

bool EnvTasks::WhileOpen(const std::function<void()>& fn) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closing_) return false;
  fn();
  return true;
}

bool EnvTasks::closing() {
  std::lock_guard<std::mutex> lock(mutex_);
  return closing_;
}

void EnvTasks::Remove(ThreadTask* task) {
  std::lock_guard<std::mutex> lock(mutex_);
  live_.erase(task);
}

void EnvTasks::Close() {
  std::vector<ThreadTask*> tasks;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    closing_ = true;
    tasks.assign(live_.begin(), live_.end());
    for (ThreadTask* t : tasks) t->Cancel();
    // A cancelled slice ends within a graph (cancel flags are read between them).
    idle_.wait(lock, [&] { return running_ == 0; });
  }
  // Unlocked: releasing a model joins its thread, which may be taking a closed task off its queue.
  for (ThreadTask* t : tasks) t->DropNative();
}

ThreadTask::ThreadTask(Napi::Env env) : env_tasks_(EnvTasks::Of(env)), deferred_(Napi::Promise::Deferred::New(env)) {
  // Keeps the event loop alive until the task settles, as an AsyncWorker would.
  tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function(), "hovle.task", 0, 1);
}

ThreadTask::~ThreadTask() {
  // Never queued (a subclass constructor threw): nothing else will release the handle, and it
  // would keep the event loop alive.
  if (!queued_) tsfn_.Release();
}

Napi::Promise ThreadTask::Queue(TaskThread& thread) {
  // Registered once whole: a constructor that throws leaves nothing in the registry.
  env_tasks_->Add(this);
  queued_ = true;
  Napi::Promise promise = deferred_.Promise();
  PostStep(thread);
  return promise;
}

void ThreadTask::PostStep(TaskThread& thread) {
  // The thread outlives the task: it belongs to the model, which the task's context holds.
  // Once the environment closes, the task may only be reached through its EnvTasks.
  thread.Post([this, tasks = env_tasks_, &thread] {
    if (tasks->Enter()) Step(thread);
  });
}

// Runs between Enter() and, on every path, Leave().
void ThreadTask::Step(TaskThread& thread) {
  bool done = true;
  try {
    done = RunSlice();
  } catch (const std::exception&) {
    CaughtError e = DescribeCaught();
    failed_ = true;
    code_ = std::move(e.code);
    message_ = std::move(e.message);
  }
  std::shared_ptr<EnvTasks> tasks = env_tasks_;
  tasks->Leave();
  if (!done) {
    PostStep(thread);
    return;
  }
  // Settle() deletes the task on the JS thread, possibly before BlockingCall returns here:
  // use a copy of the handle, never a member, from this point on. The call is made under the
  // EnvTasks lock, so it reaches the queue before the environment's teardown can begin (with an
  // unbounded queue it does not block); once closing, the handle is left alone.
  Napi::ThreadSafeFunction tsfn = tsfn_;
  tasks->WhileOpen([&] {
    tsfn.BlockingCall(this, [](Napi::Env env, Napi::Function, ThreadTask* task) { task->Settle(env); });
    tsfn.Release();
  });
}

void ThreadTask::Settle(Napi::Env env) {
  env_tasks_->Remove(this);
  // Reached while the environment tears down, after Close() released what the task held: the
  // handles are still valid here, the result is not wanted.
  if (!env_tasks_->closing()) {
    try {
      Napi::HandleScope scope(env);
      if (failed_) {
        deferred_.Reject(MakeError(env, code_, message_).Value());
      } else {
        try {
          deferred_.Resolve(RethrowAsJs(env, [&] { return Result(env); }));
        } catch (const Napi::Error& e) {
          deferred_.Reject(e.Value());
        }
      }
    } catch (...) {
      // A worker being terminated: its JS stopped before the cleanup hook ran, so creating the
      // result or rejecting throws. Nobody waits for the promise; an exception leaving this
      // callback would end the whole process.
    }
  }
  delete this;
}

}  // namespace hovle
