#pragma once

#include <napi.h>

#include <memory>

#include "errors.h"
#include "model.h"

namespace hovle {

class ModelWrap : public Napi::ObjectWrap<ModelWrap>, public GuardedMethods<ModelWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit ModelWrap(const Napi::CallbackInfo& info);
  std::shared_ptr<Model> model;

 private:
  std::shared_ptr<Model> Get(Napi::Env env);
  Napi::Value CreateContext(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
};

class ContextWrap : public Napi::ObjectWrap<ContextWrap>, public GuardedMethods<ContextWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit ContextWrap(const Napi::CallbackInfo& info);
  std::shared_ptr<Context> ctx;

 private:
  std::shared_ptr<Context> Get(Napi::Env env);
  Napi::Value Vision(const Napi::CallbackInfo& info);
  Napi::Value ShuffleProject(const Napi::CallbackInfo& info);
  Napi::Value Embed(const Napi::CallbackInfo& info);
  Napi::Value Llm(const Napi::CallbackInfo& info);
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Decode(const Napi::CallbackInfo& info);
  Napi::Value NPast(const Napi::CallbackInfo& info);
  Napi::Value Memory(const Napi::CallbackInfo& info);
  Napi::Value Truncate(const Napi::CallbackInfo& info);
  Napi::Value Fork(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
};

// Adds loadModel to exports and remembers the class constructors in AddonData.
void RegisterModelClasses(Napi::Env env, Napi::Object exports);

}  // namespace hovle
