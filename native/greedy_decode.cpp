#include "greedy_decode.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <string>
#include <utility>

#include "errors.h"
#include "task_thread.h"

namespace hovle {
namespace {

class GreedyDecodeTask : public ThreadTask {
 public:
  GreedyDecodeTask(Napi::Env env, std::shared_ptr<Context> ctx, int32_t first, int max_steps,
                   std::vector<int32_t> stop_ids, Napi::Function on_pick, std::shared_ptr<std::atomic<bool>> stop)
      : ThreadTask(env), ctx_(std::move(ctx)), tok_(first), max_steps_(max_steps),
        stop_ids_(std::move(stop_ids)), stop_(std::move(stop)) {
    picks_.reserve(static_cast<size_t>(std::min(max_steps_, 4096)));
    on_pick_ = Napi::ThreadSafeFunction::New(env, on_pick, "hovle.greedyPick", 0, 1);
  }
  ~GreedyDecodeTask() override { on_pick_.Release(); }

 protected:
  // Steps until the run ends, or until another context's call is queued on the model's thread:
  // then it goes first, between two steps, as it would between two evaluate() calls, and the run
  // is queued again behind it. Sessions sharing a model take turns per token, as before.
  bool RunSlice() override {
    if (!lock_.owns_lock()) {
      lock_ = std::unique_lock<BusyFlag>(ctx_->busy, std::try_to_lock);
      if (!lock_.owns_lock()) throw Error("BUSY", "this context is already computing; calls must not overlap");
    }
    // Held across slices (nothing may touch this context between them), released by the last
    // one, on this thread, whichever way it ends.
    bool done = true;
    try {
      done = Steps();
    } catch (...) {
      lock_.unlock();
      throw;
    }
    if (done) lock_.unlock();
    return done;
  }

  // True when the run has ended.
  bool Steps() {
    Context& ctx = *ctx_;
    TaskThread& thread = ctx.task_thread();
    for (;;) {
      if (step_ >= max_steps_) {
        reason_ = "maxSteps";
        return true;
      }
      if (stop_->load(std::memory_order_relaxed)) {
        reason_ = "stopped";
        return true;
      }
      if (ctx.n_past(true) >= ctx.n_ctx(true) || ctx.n_past(false) >= ctx.n_ctx(false)) {
        reason_ = "contextFull";
        return true;
      }
      int32_t pick = -1;
      try {
        ctx.Forward(&tok_, 1, nullptr, 0, {}, nullptr, &pick);
      } catch (const std::exception&) {
        // Any failure comes back with the picks made before it (the promise's result lists
        // them): a rejection could reach JS ahead of their callbacks and lose them.
        CaughtError e = DescribeCaught();
        error_code_ = std::move(e.code);
        error_message_ = std::move(e.message);
        reason_ = "error";
        return true;
      }
      picks_.push_back(pick);
      const int index = step_++;
      // The queue is unbounded, so this never blocks the step loop; it fails only once the JS
      // environment is shutting down, and then nobody is waiting for the pick.
      on_pick_.NonBlockingCall([index, pick](Napi::Env env, Napi::Function fn) {
        fn.Call({Napi::Number::New(env, index), Napi::Number::New(env, pick)});
      });
      if (std::find(stop_ids_.begin(), stop_ids_.end(), pick) != stop_ids_.end()) {
        reason_ = "stopId";
        return true;
      }
      tok_ = pick;
      if (thread.HasWaiting()) return false;
    }
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    Napi::Int32Array picks = Napi::Int32Array::New(env, picks_.size());
    std::copy(picks_.begin(), picks_.end(), picks.Data());
    o.Set("picks", picks);
    o.Set("reason", reason_);
    if (!error_code_.empty()) o.Set("error", MakeError(env, error_code_, error_message_).Value());
    return o;
  }

 private:
  std::shared_ptr<Context> ctx_;
  int32_t tok_;  // the next token to evaluate
  int max_steps_;
  int step_ = 0;
  std::unique_lock<BusyFlag> lock_;
  std::vector<int32_t> stop_ids_;
  std::shared_ptr<std::atomic<bool>> stop_;
  Napi::ThreadSafeFunction on_pick_;
  std::vector<int32_t> picks_;
  const char* reason_ = "maxSteps";
  std::string error_code_, error_message_;
};

}  // namespace

Napi::Value QueueGreedyDecode(Napi::Env env, std::shared_ptr<Context> ctx, int32_t first, int max_steps,
                              std::vector<int32_t> stop_ids, Napi::Function on_pick) {
  auto stop = std::make_shared<std::atomic<bool>>(false);
  TaskThread& thread = ctx->task_thread();
  auto* task = new GreedyDecodeTask(env, std::move(ctx), first, max_steps, std::move(stop_ids), on_pick, stop);
  Napi::Object result = Napi::Object::New(env);
  result.Set("promise", task->Queue(thread));
  result.Set("stop", Napi::Function::New(env, [stop](const Napi::CallbackInfo& info) {
    stop->store(true, std::memory_order_relaxed);
    return info.Env().Undefined();
  }, "stop"));
  return result;
}

}  // namespace hovle
