#include "task_thread.h"

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

ThreadTask::ThreadTask(Napi::Env env) : deferred_(Napi::Promise::Deferred::New(env)) {
  // Keeps the event loop alive until the task settles, as an AsyncWorker would.
  tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function(), "hovle.task", 0, 1);
}

Napi::Promise ThreadTask::Queue(TaskThread& thread) {
  Napi::Promise promise = deferred_.Promise();
  // The thread outlives the task: it belongs to the model, which the task's context holds.
  thread.Post([this, &thread] { Step(thread); });
  return promise;
}

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
  if (!done) {
    thread.Post([this, &thread] { Step(thread); });
    return;
  }
  // Settle() deletes the task on the JS thread, possibly before BlockingCall returns here:
  // use a copy of the handle, never a member, from this point on.
  Napi::ThreadSafeFunction tsfn = tsfn_;
  tsfn.BlockingCall(this, [](Napi::Env env, Napi::Function, ThreadTask* task) { task->Settle(env); });
  tsfn.Release();
}

void ThreadTask::Settle(Napi::Env env) {
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
  delete this;
}

}  // namespace hovle
