// An AsyncWorker that settles a Promise: Run() on a libuv worker thread, Result() back on the
// JS thread. Exceptions from Run() reject the Promise with a HovleError carrying their code.
#pragma once

#include <napi.h>

#include <string>

#include "errors.h"

namespace hovle {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* resourceName)
      : Napi::AsyncWorker(env, resourceName), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  virtual void Run() = 0;
  virtual Napi::Value Result(Napi::Env env) = 0;

 private:
  void Execute() override {
    try {
      Run();
    } catch (const std::exception&) {
      CaughtError e = DescribeCaught();
      code_ = std::move(e.code);
      SetError(e.message);
    }
  }

  // An exception leaving these would end the process: a worker thread's environment that is
  // being terminated can no longer create results or reject (nobody waits for them then).
  void OnOK() override {
    Napi::Env env = Env();
    try {
      try {
        deferred_.Resolve(RethrowAsJs(env, [&] { return Result(env); }));
      } catch (const Napi::Error& e) {
        deferred_.Reject(e.Value());
      }
    } catch (...) {
    }
  }

  void OnError(const Napi::Error& e) override {
    try {
      deferred_.Reject(MakeError(Env(), code_, e.Message()).Value());
    } catch (...) {
    }
  }

  Napi::Promise::Deferred deferred_;
  std::string code_ = "INTERNAL";
};

}  // namespace hovle
