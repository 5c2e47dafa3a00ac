// Values read from the arguments and option objects the JS facade passes in. The facade validates what users
// set, with its own messages; these checks are the last line of defence, because a double
// converted to int outside int's range (or NaN) is undefined behaviour.
#pragma once

#include <napi.h>

#include <climits>
#include <cstdint>
#include <cmath>
#include <optional>
#include <string>

#include "errors.h"

namespace hovle {

// o[key] as a number; `fallback` when the key is absent (undefined) and a fallback is given.
inline double NumberAt(const Napi::Object& o, const char* key, std::optional<double> fallback = std::nullopt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() && fallback) return *fallback;
  if (!v.IsNumber()) throw MakeError(o.Env(), "INVALID_ARGUMENT", std::string(key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

// `d` (named `name` in the error) as an integer in [lo, hi].
inline int64_t IntIn(Napi::Env env, double d, const char* name, int64_t lo, int64_t hi) {
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || std::floor(d) != d) {
    throw MakeError(env, "INVALID_ARGUMENT", std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return static_cast<int64_t>(d);
}

// o[key] as an integer in [lo, hi]; `fallback` as for NumberAt.
inline int IntAt(const Napi::Object& o, const char* key, int lo = INT_MIN, int hi = INT_MAX,
                 std::optional<int> fallback = std::nullopt) {
  const double d = NumberAt(o, key, fallback ? std::optional<double>(*fallback) : std::nullopt);
  return static_cast<int>(IntIn(o.Env(), d, key, lo, hi));
}

// Argument i as an integer in [lo, hi], named `name` in the error.
inline int64_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t lo, int64_t hi) {
  if (info.Length() <= i || !info[i].IsNumber()) throw MakeError(info.Env(), "INVALID_ARGUMENT", std::string(name) + " must be a number");
  return IntIn(info.Env(), info[i].As<Napi::Number>().DoubleValue(), name, lo, hi);
}

// Argument i when it is a string, else "" (an optional path such as a test's fake root).
inline std::string OptionalStringArg(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : "";
}

}  // namespace hovle
