// mount(2) and umount2(2).
#include <errno.h>
#include <sys/mount.h>

#include <string>

#include "util.h"

namespace runcts {

// mount(source, target, fstype, flags, data); an empty fstype or data is passed as NULL.
static Napi::Value Mount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string source, target, fstype, data;
  uint32_t flags;
  if (!ArgString(info, 0, "source", &source) || !ArgString(info, 1, "target", &target) ||
      !ArgString(info, 2, "fstype", &fstype) || !ArgUint32(info, 3, "flags", &flags) ||
      !ArgString(info, 4, "data", &data)) {
    return env.Undefined();
  }
  if (mount(source.c_str(), target.c_str(), fstype.empty() ? nullptr : fstype.c_str(), flags,
            data.empty() ? nullptr : data.c_str()) != 0) {
    return ThrowErrno(env, errno, "mount", target);
  }
  return env.Undefined();
}

// umount2(target, flags), e.g. MNT_DETACH = 2.
static Napi::Value Umount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string target;
  uint32_t flags;
  if (!ArgString(info, 0, "target", &target) || !ArgUint32(info, 1, "flags", &flags)) return env.Undefined();
  if (umount2(target.c_str(), static_cast<int>(flags)) != 0) return ThrowErrno(env, errno, "umount2", target);
  return env.Undefined();
}

void InitMount(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, Mount, "mount"));
  exports.Set("umount", Napi::Function::New(env, Umount, "umount"));
}

}  // namespace runcts
