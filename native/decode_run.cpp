#include "decode_run.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <string>
#include <utility>

#include "errors.h"
#include "task_thread.h"

namespace hovle {
namespace {

class DecodeRunTask : public ThreadTask {
 public:
  DecodeRunTask(Napi::Env env, std::shared_ptr<Context> ctx, int32_t first, int max_steps,
                std::vector<int32_t> stop_ids, Napi::Function on_pick, std::shared_ptr<std::atomic<bool>> stop,
                std::unique_ptr<TokenSampler> sampler, std::vector<int32_t> history)
      : ThreadTask(env), ctx_(std::move(ctx)), tok_(first), max_steps_(max_steps),
        stop_ids_(std::move(stop_ids)), stop_(std::move(stop)), sampler_(std::move(sampler)),
        history_(std::move(history)) {
    picks_.reserve(static_cast<size_t>(std::min(max_steps_, 4096)));
    if (sampler_) logits_.resize(static_cast<size_t>(sampler_->n_vocab()));
    on_pick_ = Napi::ThreadSafeFunction::New(env, on_pick, "hovle.decodePick", 0, 1);
  }
  ~DecodeRunTask() override { on_pick_.Release(); }

  void Cancel() override { stop_->store(true, std::memory_order_relaxed); }
  void DropNative() override {
    if (lock_.owns_lock()) lock_.unlock();  // held across slices: let the context go free
    lock_.release();
    ctx_.reset();
    sampler_.reset();
  }

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
        if (sampler_) {
          ctx.Forward(&tok_, 1, nullptr, 0, {}, logits_.data());
          history_.push_back(tok_);
          pick = sampler_->Sample(logits_.data(), history_.data(), history_.size());
        } else {
          ctx.Forward(&tok_, 1, nullptr, 0, {}, nullptr, &pick);
        }
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
      const uint32_t state = sampler_ ? sampler_->state() : 0;
      states_.push_back(state);
      const int index = step_++;
      // The queue is unbounded, so this never blocks the step loop; it fails only once the JS
      // environment is shutting down, and then nobody is waiting for the pick.
      on_pick_.NonBlockingCall([index, pick, state](Napi::Env env, Napi::Function fn) {
        // As for a load's progress (model_binding.cpp): back to JS, or dropped while a
        // worker's environment stops, never out of this callback.
        try {
          fn.Call({Napi::Number::New(env, index), Napi::Number::New(env, pick), Napi::Number::New(env, state)});
        } catch (const Napi::Error& e) {
          e.ThrowAsJavaScriptException();
        }
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
    Napi::Uint32Array states = Napi::Uint32Array::New(env, states_.size());
    std::copy(states_.begin(), states_.end(), states.Data());
    o.Set("states", states);
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
  std::unique_ptr<TokenSampler> sampler_;  // null: greedy, the pick taken in the graph
  std::vector<int32_t> history_;           // what the sampler's penalties look back on
  std::vector<float> logits_;
  std::vector<int32_t> picks_;
  std::vector<uint32_t> states_;  // the sampler's state after each pick (0 without one)
  const char* reason_ = "maxSteps";
  std::string error_code_, error_message_;
};

}  // namespace

Napi::Value QueueDecodeRun(Napi::Env env, std::shared_ptr<Context> ctx, int32_t first, int max_steps,
                           std::vector<int32_t> stop_ids, Napi::Function on_pick,
                           std::unique_ptr<TokenSampler> sampler, std::vector<int32_t> history) {
  auto stop = std::make_shared<std::atomic<bool>>(false);
  TaskThread& thread = ctx->task_thread();
  auto* task = new DecodeRunTask(env, std::move(ctx), first, max_steps, std::move(stop_ids), on_pick, stop,
                                 std::move(sampler), std::move(history));
  Napi::Object result = Napi::Object::New(env);
  result.Set("promise", task->Queue(thread));
  result.Set("stop", Napi::Function::New(env, [stop](const Napi::CallbackInfo& info) {
    stop->store(true, std::memory_order_relaxed);
    return info.Env().Undefined();
  }, "stop"));
  return result;
}

}  // namespace hovle
