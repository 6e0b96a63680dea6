// Child processes: subreaper, non-blocking reaping, and posix_spawn with an exact fd map.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "util.h"

namespace runcts {

// prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are reparented to us, not to init.
static Napi::Value SetSubreaper(const Napi::CallbackInfo& info) {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) return ThrowErrno(info.Env(), errno, "prctl");
  return info.Env().Undefined();
}

// setsid(2): a process that outlives the command that started it leaves that command's process
// group and session (containerd signals the group of a `start` it gave up on).
static Napi::Value Setsid(const Napi::CallbackInfo& info) {
  if (setsid() < 0) return ThrowErrno(info.Env(), errno, "setsid");
  return info.Env().Undefined();
}

// dup2 /dev/null over fds 0, 1 and 2: a daemon must not hold the stdio of whoever started it
// (containerd reads `start`'s stdout and stderr until every holder has closed them).
static Napi::Value DetachStdio(const Napi::CallbackInfo& info) {
  int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd < 0) return ThrowErrno(info.Env(), errno, "open", "/dev/null");
  for (int target = 0; target <= 2; target++) {
    if (fd == target) continue;
    while (dup2(fd, target) < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      if (fd > 2) close(fd);
      return ThrowErrno(info.Env(), err, "dup2");
    }
  }
  if (fd > 2) close(fd);
  else fcntl(fd, F_SETFD, 0);  // it is one of 0-2 itself now: those stay open across exec
  return info.Env().Undefined();
}

// waitpid(-1, WNOHANG) until there is nothing left to collect; never blocks.
// Returns [{pid, status}] with status = exit code, or 128 + signal for a killed process.
static Napi::Value Reap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  for (;;) {
    int st = 0;
    // __WALL: also children whose exit signal is not SIGCHLD, so none of them stays a zombie.
    pid_t pid = waitpid(-1, &st, WNOHANG | __WALL);
    if (pid == 0) break;
    if (pid < 0) {
      if (errno == EINTR) continue;
      if (errno == ECHILD) break;
      // Unexpected; exits already collected must not be lost, so return them instead of throwing.
      if (n > 0) break;
      return ThrowErrno(env, errno, "waitpid");
    }
    int status;
    if (WIFEXITED(st)) {
      status = WEXITSTATUS(st);
    } else if (WIFSIGNALED(st)) {
      status = 128 + WTERMSIG(st);
    } else {
      continue;  // stopped/continued are not requested; never an exit
    }
    Napi::Object e = Napi::Object::New(env);
    e.Set("pid", Napi::Number::New(env, pid));
    e.Set("status", Napi::Number::New(env, status));
    out.Set(n++, e);
  }
  return out;
}

static bool StringArray(Napi::Env env, Napi::Value v, const char* name, std::vector<std::string>* out) {
  if (!v.IsArray()) {
    ThrowType(env, std::string("spawn: ") + name + " must be an array of strings");
    return false;
  }
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value s = a.Get(i);
    if (!s.IsString()) {
      ThrowType(env, std::string("spawn: ") + name + " must be an array of strings");
      return false;
    }
    out->push_back(s.As<Napi::String>().Utf8Value());
    if (out->back().find('\0') != std::string::npos) {
      ThrowType(env, std::string("spawn: ") + name + " must not contain NUL bytes");
      return false;
    }
  }
  return true;
}

static std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(&s[0]);
  out.push_back(nullptr);
  return out;
}

// Every signal, including glibc's internal ones (32, 33) that sigfillset leaves out: posix_spawn
// would otherwise set those to SIG_IGN in the child, and ignored dispositions survive exec.
static void FillAllSignals(sigset_t* set) {
  sigfillset(set);
  for (int sig = 1; sig < NSIG; sig++) {
    if (sigismember(set, sig) == 1) continue;
    unsigned long bit = sig - 1;
    unsigned long* words = reinterpret_cast<unsigned long*>(set);
    words[bit / (8 * sizeof(unsigned long))] |= 1UL << (bit % (8 * sizeof(unsigned long)));
  }
}

// spawn({file, args, env, cwd?, fds, setsid?}) -> pid.
// Child fd i = fds[i] (-1: /dev/null); every fd >= fds.length is closed; the signal mask is
// empty and every disposition is the default; cwd via addchdir; optionally a new session.
static Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) return ThrowType(env, "spawn: options must be an object");
  Napi::Object opts = info[0].As<Napi::Object>();

  Napi::Value fileV = opts.Get("file");
  if (!fileV.IsString()) return ThrowType(env, "spawn: file must be a string");
  std::string file = fileV.As<Napi::String>().Utf8Value();
  if (file.empty() || file.find('\0') != std::string::npos) return ThrowType(env, "spawn: file must be a non-empty string");

  std::vector<std::string> args, envs;
  if (!StringArray(env, opts.Get("args"), "args", &args)) return env.Undefined();
  if (args.empty()) return ThrowType(env, "spawn: args must contain at least argv[0]");
  if (!StringArray(env, opts.Get("env"), "env", &envs)) return env.Undefined();

  std::string cwd;
  Napi::Value cwdV = opts.Get("cwd");
  if (!cwdV.IsUndefined() && !cwdV.IsNull()) {
    if (!cwdV.IsString()) return ThrowType(env, "spawn: cwd must be a string");
    cwd = cwdV.As<Napi::String>().Utf8Value();
    if (cwd.empty() || cwd.find('\0') != std::string::npos) return ThrowType(env, "spawn: cwd must be a non-empty string");
  }

  Napi::Value fdsV = opts.Get("fds");
  if (!fdsV.IsArray()) return ThrowType(env, "spawn: fds must be an array of numbers");
  Napi::Array fdsA = fdsV.As<Napi::Array>();
  std::vector<int> fds;
  for (uint32_t i = 0; i < fdsA.Length(); i++) {
    Napi::Value f = fdsA.Get(i);
    double d = f.IsNumber() ? f.As<Napi::Number>().DoubleValue() : -2;
    if (d < -1 || d > 2147483647 || d != static_cast<int>(d)) {
      return ThrowType(env, "spawn: fds[" + std::to_string(i) + "] must be a file descriptor or -1");
    }
    fds.push_back(static_cast<int>(d));
  }
  if (fds.size() > 1024) return ThrowType(env, "spawn: too many fds");
  Napi::Value setsidV = opts.Get("setsid");
  bool setsid = setsidV.IsBoolean() && setsidV.As<Napi::Boolean>().Value();

  const int n = static_cast<int>(fds.size());
  // Overlaps (fds[i] == j for another target j, or a source that is itself a target) are made
  // harmless by first duplicating every source above all targets; the child dup2s those copies.
  std::vector<int> tmp(n, -1);
  auto closeTmp = [&tmp]() {
    for (int fd : tmp) {
      if (fd >= 0) close(fd);
    }
  };
  for (int i = 0; i < n; i++) {
    if (fds[i] < 0) continue;
    tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, std::max(n, 3));
    if (tmp[i] < 0) {
      int err = errno;
      closeTmp();
      return ThrowErrno(env, err, "fcntl", "fd " + std::to_string(fds[i]));
    }
  }

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  int rc = posix_spawn_file_actions_init(&fa);
  if (rc != 0) {
    closeTmp();
    return ThrowErrno(env, rc, "posix_spawn_file_actions_init");
  }
  rc = posix_spawnattr_init(&attr);
  if (rc != 0) {
    posix_spawn_file_actions_destroy(&fa);
    closeTmp();
    return ThrowErrno(env, rc, "posix_spawnattr_init");
  }
  const char* failed = "posix_spawn";
  for (int i = 0; i < n && rc == 0; i++) {
    if (tmp[i] >= 0) {
      rc = posix_spawn_file_actions_adddup2(&fa, tmp[i], i);
    } else {
      rc = posix_spawn_file_actions_addopen(&fa, i, "/dev/null", O_RDWR, 0);
    }
  }
  if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&fa, n);
  if (rc == 0 && !cwd.empty()) rc = posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  if (rc != 0) failed = "posix_spawn_file_actions";

  if (rc == 0) {
    sigset_t none, all;
    sigemptyset(&none);
    FillAllSignals(&all);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (setsid) flags |= POSIX_SPAWN_SETSID;
    rc = posix_spawnattr_setflags(&attr, flags);
    if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &none);
    if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr, &all);
    if (rc != 0) failed = "posix_spawnattr";
  }

  pid_t pid = -1;
  if (rc == 0) {
    std::vector<char*> argv = CStrings(args);
    std::vector<char*> envp = CStrings(envs);
    // posix_spawnp searches PATH (the shim's own) when file has no '/'. A failed exec or file
    // action is reported here as its errno; glibc has already reaped that child.
    rc = posix_spawnp(&pid, file.c_str(), &fa, &attr, argv.data(), envp.data());
  }
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  closeTmp();
  if (rc != 0) {
    // glibc reports a failed chdir action with the same errno as a failed exec; name the cwd
    // when it is the culprit.
    if (!cwd.empty() && (rc == ENOENT || rc == ENOTDIR || rc == EACCES) && access(cwd.c_str(), X_OK) != 0) {
      return ThrowErrno(env, errno, "chdir", cwd);
    }
    return ThrowErrno(env, rc, failed, file);
  }
  return Napi::Number::New(env, pid);
}

void InitProcess(Napi::Env env, Napi::Object exports) {
  exports.Set("setSubreaper", Napi::Function::New(env, SetSubreaper, "setSubreaper"));
  exports.Set("reap", Napi::Function::New(env, Reap, "reap"));
  exports.Set("spawn", Napi::Function::New(env, Spawn, "spawn"));
  exports.Set("setsid", Napi::Function::New(env, Setsid, "setsid"));
  exports.Set("detachStdio", Napi::Function::New(env, DetachStdio, "detachStdio"));
}

}  // namespace runcts
