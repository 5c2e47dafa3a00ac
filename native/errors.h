// Typed errors that cross from C++ into JS as instances of the facade's HovleError class.
#pragma once

#include <napi.h>

#include <stdexcept>
#include <string>

namespace hovle {

// Thrown anywhere in native code (including worker threads); `code` becomes HovleError.code.
class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message) : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// The code and message a caught std::exception crosses into JS with: a hovle::Error keeps its
// code, std::bad_alloc is OUT_OF_MEMORY, anything else INTERNAL. Call it inside a
// `catch (const std::exception&)` block (it rethrows the exception being handled to tell).
struct CaughtError {
  std::string code;
  std::string message;
};
CaughtError DescribeCaught();

// Registered once per JS environment by the facade (better-sqlite3 style): the error class is
// passed in rather than defined in C++, so `instanceof HovleError` holds on the JS side.
void RegisterErrorClass(const Napi::CallbackInfo& info);

// Builds a HovleError (or a plain Error if none was registered yet) on the JS thread.
Napi::Error MakeError(Napi::Env env, const std::string& code, const std::string& message);

// Runs `fn` (call it on the JS thread) and rethrows any std::exception other than a
// Napi::Error leaving it as a HovleError, coded by DescribeCaught (std::bad_alloc is
// OUT_OF_MEMORY), so the caller sees a typed error. node-addon-api alone passes only Napi::Error
// on to JS and terminates the process on anything else; NODE_ADDON_API_CPP_EXCEPTIONS_ALL
// (CMakeLists.txt) catches what code not wrapped in this lets through, as a plain Error.
template <class F>
decltype(auto) RethrowAsJs(Napi::Env env, F&& fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception&) {
    const CaughtError c = DescribeCaught();
    throw MakeError(env, c.code, c.message);
  }
}

// A free binding function run through RethrowAsJs: Napi::Function::New(env, Guarded<Fn>, name).
// Most copy a caller's buffers or strings on the JS thread, which can fail to allocate.
template <Napi::Value (*Fn)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  return RethrowAsJs(info.Env(), [&] { return Fn(info); });
}

// The same for the methods of an ObjectWrap class T that derives from GuardedMethods<T>:
// InstanceMethod("name", &T::template Guard<&T::Method>). Those copy tiles, ids and options on
// the JS thread too.
template <class T>
class GuardedMethods {
 protected:
  template <Napi::Value (T::*Method)(const Napi::CallbackInfo&)>
  Napi::Value Guard(const Napi::CallbackInfo& info) {
    return RethrowAsJs(info.Env(), [&] { return (static_cast<T*>(this)->*Method)(info); });
  }
};

}  // namespace hovle
