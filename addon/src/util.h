// Shared helpers of the runcts native addon: argument checks and errno errors shaped like Node's.
#pragma once

#include <napi.h>

#include <string>

namespace runcts {

// Throws an Error like Node's fs errors: message "ENOENT: No such file or directory, posix_spawn '/x'",
// with code ('ENOENT'), errno (negative, as in Node: -2), syscall and, when given, path.
// Returns undefined so callers can `return ThrowErrno(...)`.
Napi::Value ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& path = "");

// Throws a TypeError and returns undefined.
Napi::Value ThrowType(Napi::Env env, const std::string& message);

// Argument readers: false (with a TypeError pending) when info[i] has the wrong type.
bool ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name, int* out);
bool ArgString(const Napi::CallbackInfo& info, size_t i, const char* name, std::string* out);
bool ArgUint32(const Napi::CallbackInfo& info, size_t i, const char* name, uint32_t* out);

void InitProcess(Napi::Env env, Napi::Object exports);
void InitFd(Napi::Env env, Napi::Object exports);
void InitMount(Napi::Env env, Napi::Object exports);

}  // namespace runcts
