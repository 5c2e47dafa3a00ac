#include "errors.h"

#include <new>

#include "addon_data.h"

namespace hovle {

CaughtError DescribeCaught() {
  try {
    throw;
  } catch (const Error& e) {
    return {e.code(), e.what()};
  } catch (const std::bad_alloc&) {
    return {"OUT_OF_MEMORY", "out of memory"};
  } catch (const std::exception& e) {
    return {"INTERNAL", e.what()};
  }
}

void RegisterErrorClass(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsFunction()) {
    throw Napi::TypeError::New(info.Env(), "registerErrorClass expects a constructor");
  }
  AddonData::Get(info.Env()).errorClass = Napi::Persistent(info[0].As<Napi::Function>());
}

Napi::Error MakeError(Napi::Env env, const std::string& code, const std::string& message) {
  AddonData& data = AddonData::Get(env);
  if (data.errorClass.IsEmpty()) {
    Napi::Error err = Napi::Error::New(env, message);
    err.Set("code", Napi::String::New(env, code));
    return err;
  }
  Napi::Object obj = data.errorClass.New({Napi::String::New(env, code), Napi::String::New(env, message)});
  return Napi::Error(env, obj);
}

}  // namespace hovle
