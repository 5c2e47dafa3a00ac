#include "cancel_flag.h"

#include "addon_data.h"

namespace hovle {

Napi::Function CancelFlagWrap::Define(Napi::Env env) {
  Napi::Function f = DefineClass(env, "CancelFlag", {InstanceMethod("cancel", &CancelFlagWrap::Cancel)});
  AddonData::Get(env).cancelFlagCtor = Napi::Persistent(f);
  return f;
}

CancelFlagWrap::CancelFlagWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CancelFlagWrap>(info) {}

Napi::Value CancelFlagWrap::Cancel(const Napi::CallbackInfo& info) {
  flag_->store(true, std::memory_order_relaxed);
  return info.Env().Undefined();
}

std::shared_ptr<std::atomic<bool>> CancelFlagWrap::From(Napi::Env env, const Napi::Value& v) {
  if (v.IsEmpty() || v.IsUndefined() || v.IsNull()) return nullptr;
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(AddonData::Get(env).cancelFlagCtor.Value())) {
    throw MakeError(env, "INVALID_ARGUMENT", "expected a CancelFlag");
  }
  return Napi::ObjectWrap<CancelFlagWrap>::Unwrap(v.As<Napi::Object>())->flag_;
}

}  // namespace hovle
