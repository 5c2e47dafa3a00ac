#include "greedy_decode.h"

#include <algorithm>
#include <atomic>
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
      : ThreadTask(env), ctx_(std::move(ctx)), first_(first), max_steps_(max_steps),
        stop_ids_(std::move(stop_ids)), stop_(std::move(stop)) {
    picks_.reserve(static_cast<size_t>(std::min(max_steps_, 4096)));
    on_pick_ = Napi::ThreadSafeFunction::New(env, on_pick, "hovle.greedyPick", 0, 1);
  }
  ~GreedyDecodeTask() override { on_pick_.Release(); }

 protected:
  void Run() override {
    std::unique_lock<std::mutex> lock(ctx_->busy, std::try_to_lock);
    if (!lock.owns_lock()) throw Error("BUSY", "this context is already computing; calls must not overlap");
    Context& ctx = *ctx_;
    int32_t tok = first_;
    reason_ = "maxSteps";
    for (int step = 0; step < max_steps_; ++step) {
      if (stop_->load(std::memory_order_relaxed)) {
        reason_ = "stopped";
        break;
      }
      if (ctx.n_past(true) >= ctx.n_ctx(true) || ctx.n_past(false) >= ctx.n_ctx(false)) {
        reason_ = "contextFull";
        break;
      }
      int32_t pick = -1;
      try {
        ctx.Forward(&tok, 1, nullptr, 0, {}, nullptr, &pick);
      } catch (const Error& e) {
        error_code_ = e.code();
        error_message_ = e.what();
        reason_ = "error";
        break;
      }
      picks_.push_back(pick);
      const int index = step;
      // The queue is unbounded, so this never blocks the step loop; it fails only once the JS
      // environment is shutting down, and then nobody is waiting for the pick.
      on_pick_.NonBlockingCall([index, pick](Napi::Env env, Napi::Function fn) {
        fn.Call({Napi::Number::New(env, index), Napi::Number::New(env, pick)});
      });
      if (std::find(stop_ids_.begin(), stop_ids_.end(), pick) != stop_ids_.end()) {
        reason_ = "stopId";
        break;
      }
      tok = pick;
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
  int32_t first_;
  int max_steps_;
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
