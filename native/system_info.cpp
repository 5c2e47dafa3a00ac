#include "system_info.h"

#include <string>
#include <utility>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"
#include "cpu_compute.h"
#include "promise_worker.h"

namespace hovle {
namespace {

const char* DeviceTypeName(enum ggml_backend_dev_type type) {
  switch (type) {
    case GGML_BACKEND_DEVICE_TYPE_CPU: return "cpu";
    case GGML_BACKEND_DEVICE_TYPE_GPU: return "gpu";
    case GGML_BACKEND_DEVICE_TYPE_IGPU: return "igpu";
    case GGML_BACKEND_DEVICE_TYPE_ACCEL: return "accel";
    default: return "other";
  }
}

struct Device {
  std::string name;
  std::string description;
  std::string type;
  std::string backend;
  double memoryFree = 0;
  double memoryTotal = 0;
};

class SystemInfoWorker : public PromiseWorker {
 public:
  explicit SystemInfoWorker(Napi::Env env) : PromiseWorker(env, "hovle.systemInfo") {}

 protected:
  void Run() override {
    for (size_t i = 0; i < ggml_backend_reg_count(); ++i) {
      backends_.emplace_back(ggml_backend_reg_name(ggml_backend_reg_get(i)));
    }
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
      ggml_backend_dev_t dev = ggml_backend_dev_get(i);
      ggml_backend_dev_props props{};
      ggml_backend_dev_get_props(dev, &props);
      Device d;
      d.name = props.name ? props.name : "";
      d.description = props.description ? props.description : "";
      d.type = DeviceTypeName(props.type);
      d.backend = ggml_backend_reg_name(ggml_backend_dev_backend_reg(dev));
      d.memoryFree = static_cast<double>(props.memory_free);
      d.memoryTotal = static_cast<double>(props.memory_total);
      devices_.push_back(std::move(d));
    }
    ggml_backend_reg_t cpu = ggml_backend_reg_by_name("CPU");
    if (cpu != nullptr) {
      auto get_features = reinterpret_cast<ggml_backend_get_features_t>(
          ggml_backend_reg_get_proc_address(cpu, "ggml_backend_get_features"));
      if (get_features != nullptr) {
        for (ggml_backend_feature* f = get_features(cpu); f->name != nullptr; ++f) {
          cpuFeatures_.emplace_back(f->name, f->value ? f->value : "");
        }
      }
    }
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("ggmlVersion", ggml_version());
    out.Set("ggmlCommit", ggml_commit());
    Napi::Array backends = Napi::Array::New(env, backends_.size());
    for (size_t i = 0; i < backends_.size(); ++i) backends.Set(i, backends_[i]);
    out.Set("registeredBackends", backends);
    Napi::Array devices = Napi::Array::New(env, devices_.size());
    for (size_t i = 0; i < devices_.size(); ++i) {
      const Device& d = devices_[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", d.name);
      o.Set("description", d.description);
      o.Set("type", d.type);
      o.Set("backend", d.backend);
      o.Set("memoryFree", d.memoryFree);
      o.Set("memoryTotal", d.memoryTotal);
      devices.Set(i, o);
    }
    out.Set("devices", devices);
    Napi::Object features = Napi::Object::New(env);
    for (const auto& [name, value] : cpuFeatures_) features.Set(name, value);
    out.Set("cpuFeatures", features);
    return out;
  }

 private:
  std::vector<std::string> backends_;
  std::vector<Device> devices_;
  std::vector<std::pair<std::string, std::string>> cpuFeatures_;
};

}  // namespace

Napi::Value SystemInfo(const Napi::CallbackInfo& info) {
  auto* worker = new SystemInfoWorker(info.Env());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value CpuComputeJobsJs(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(CpuComputeJobs()));
}

}  // namespace hovle
