#include "ggml_types.h"

namespace hovle {

bool IsKnownType(int id) {
  if (id < 0 || id >= GGML_TYPE_COUNT) return false;
  const ggml_type_traits* t = ggml_get_type_traits(static_cast<ggml_type>(id));
  return t != nullptr && t->blck_size > 0 && t->type_size > 0;
}

bool CanRead(ggml_type type) {
  return type == GGML_TYPE_F32 || ggml_get_type_traits(type)->to_float != nullptr;
}

bool CanWrite(ggml_type type) {
  switch (type) {
    case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16:
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
    case GGML_TYPE_IQ4_NL: case GGML_TYPE_IQ4_XS:
      return !ggml_quantize_requires_imatrix(type);
    default:
      return false;
  }
}

Napi::Value GgmlTypes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  for (int id = 0; id < GGML_TYPE_COUNT; ++id) {
    if (!IsKnownType(id)) continue;
    const auto type = static_cast<ggml_type>(id);
    const ggml_type_traits* t = ggml_get_type_traits(type);
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", id);
    o.Set("name", t->type_name);
    o.Set("blockSize", static_cast<double>(t->blck_size));
    o.Set("typeSize", static_cast<double>(t->type_size));
    o.Set("isQuantized", t->is_quantized);
    o.Set("canRead", CanRead(type));
    o.Set("canWrite", CanWrite(type));
    out.Set(n++, o);
  }
  return out;
}

}  // namespace hovle
