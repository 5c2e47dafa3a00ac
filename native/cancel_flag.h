// A flag an AbortSignal sets from JS and a queued call reads on the model's thread between its
// graphs: a prefill of thousands of tokens, or an image of 13 tiles, stops within one graph of
// an abort instead of running to its end, and a call aborted while queued never starts.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>

#include "model.h"

namespace hovle {

// new CancelFlag(), .cancel(): the JS handle.
class CancelFlagWrap : public Napi::ObjectWrap<CancelFlagWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit CancelFlagWrap(const Napi::CallbackInfo& info);
  // The flag of argument `v`: null when it is undefined or null; INVALID_ARGUMENT when it is
  // anything but a CancelFlag.
  static std::shared_ptr<std::atomic<bool>> From(Napi::Env env, const Napi::Value& v);

 private:
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  std::shared_ptr<std::atomic<bool>> flag_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace hovle
