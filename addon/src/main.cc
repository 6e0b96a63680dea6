// runcts native addon: only what Node itself cannot do (see shim/framework/native.ts for the typed view).
#include <string.h>

#include "util.h"

namespace runcts {

Napi::Value ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& path) {
  const char* name = strerrorname_np(err);
  std::string code = name != nullptr ? name : "E" + std::to_string(err);
  std::string message = code + ": " + strerror(err) + ", " + syscall;
  if (!path.empty()) message += " '" + path + "'";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("code", Napi::String::New(env, code));
  error.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) error.Set("path", Napi::String::New(env, path));
  error.ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowType(Napi::Env env, const std::string& message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name, int* out) {
  if (!info[i].IsNumber()) {
    ThrowType(info.Env(), std::string(name) + " must be a file descriptor (number)");
    return false;
  }
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (v < 0 || v > 2147483647 || v != static_cast<int>(v)) {
    ThrowType(info.Env(), std::string(name) + " must be a non-negative integer");
    return false;
  }
  *out = static_cast<int>(v);
  return true;
}

bool ArgString(const Napi::CallbackInfo& info, size_t i, const char* name, std::string* out) {
  if (!info[i].IsString()) {
    ThrowType(info.Env(), std::string(name) + " must be a string");
    return false;
  }
  *out = info[i].As<Napi::String>().Utf8Value();
  if (out->find('\0') != std::string::npos) {
    ThrowType(info.Env(), std::string(name) + " must not contain NUL bytes");
    return false;
  }
  return true;
}

bool ArgUint32(const Napi::CallbackInfo& info, size_t i, const char* name, uint32_t* out) {
  if (!info[i].IsNumber()) {
    ThrowType(info.Env(), std::string(name) + " must be a number");
    return false;
  }
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (v < 0 || v > 4294967295.0 || v != static_cast<double>(static_cast<uint32_t>(v))) {
    ThrowType(info.Env(), std::string(name) + " must be an unsigned 32-bit integer");
    return false;
  }
  *out = static_cast<uint32_t>(v);
  return true;
}

}  // namespace runcts

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  runcts::InitProcess(env, exports);
  runcts::InitFd(env, exports);
  runcts::InitMount(env, exports);
  return exports;
}

NODE_API_MODULE(runcts_native, Init)
