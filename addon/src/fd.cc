// File descriptors Node cannot make or use: CLOEXEC pipes, flock, TIOCSWINSZ, eventfd, unix
// sockets passing fds (SCM_RIGHTS), and readiness of an arbitrary fd (uv_poll).
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>
#include <uv.h>

#include <string>

#include "util.h"

namespace runcts {

// pipe2(O_CLOEXEC) -> [readFd, writeFd].
static Napi::Value Pipe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return ThrowErrno(env, errno, "pipe2");
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, p[0]));
  out.Set(1u, Napi::Number::New(env, p[1]));
  return out;
}

// close(2). EINTR still closes the fd on Linux, so it is not an error.
static Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, "fd", &fd)) return info.Env().Undefined();
  if (close(fd) != 0 && errno != EINTR) return ThrowErrno(info.Env(), errno, "close");
  return info.Env().Undefined();
}

// flock(fd, LOCK_EX): blocks the calling thread until the lock is ours.
static Napi::Value LockExclusive(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, "fd", &fd)) return info.Env().Undefined();
  while (flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) return ThrowErrno(info.Env(), errno, "flock");
  }
  return info.Env().Undefined();
}

// flock(fd, LOCK_EX | LOCK_NB): true when granted, false when another holder has it. Never blocks.
static Napi::Value TryLockExclusive(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, "fd", &fd)) return info.Env().Undefined();
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
    if (errno != EINTR) return ThrowErrno(info.Env(), errno, "flock");
  }
  return Napi::Boolean::New(info.Env(), true);
}

// ioctl(fd, TIOCSWINSZ, {rows, cols}).
static Napi::Value SetWinsize(const Napi::CallbackInfo& info) {
  int fd;
  uint32_t rows, cols;
  if (!ArgFd(info, 0, "fd", &fd) || !ArgUint32(info, 1, "rows", &rows) || !ArgUint32(info, 2, "cols", &cols)) {
    return info.Env().Undefined();
  }
  if (rows > 0xffff || cols > 0xffff) return ThrowType(info.Env(), "rows and cols must fit in 16 bits");
  struct winsize ws;
  memset(&ws, 0, sizeof(ws));
  ws.ws_row = static_cast<unsigned short>(rows);
  ws.ws_col = static_cast<unsigned short>(cols);
  if (ioctl(fd, TIOCSWINSZ, &ws) != 0) return ThrowErrno(info.Env(), errno, "ioctl");
  return info.Env().Undefined();
}

// eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK).
static Napi::Value EventFd(const Napi::CallbackInfo& info) {
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return ThrowErrno(info.Env(), errno, "eventfd");
  return Napi::Number::New(info.Env(), fd);
}

// A listening unix stream socket at path (CLOEXEC, non-blocking, backlog 16).
static Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (!ArgString(info, 0, "path", &path)) return env.Undefined();
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) return ThrowErrno(env, ENAMETOOLONG, "bind", path);
  memcpy(addr.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ThrowErrno(env, errno, "socket");
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, err, "bind", path);
  }
  if (listen(fd, 16) != 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, err, "listen", path);
  }
  return Napi::Number::New(env, fd);
}

// accept4(CLOEXEC | NONBLOCK) -> fd, or null when no connection is pending.
static Napi::Value Accept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  for (;;) {
    int c = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c >= 0) return Napi::Number::New(env, c);
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    return ThrowErrno(env, errno, "accept4");
  }
}

// Receives one fd passed with SCM_RIGHTS on a connected unix socket (as runc's
// --console-socket sends the pty master). Returns the fd (CLOEXEC), or null when nothing is
// available yet. Throws ENOMSG when the peer closed without passing an fd. Payload bytes are
// discarded; extra fds in the same message are closed.
static Napi::Value RecvFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  for (;;) {
    char data[4096];
    struct iovec iov = {data, sizeof(data)};
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
      return ThrowErrno(env, errno, "recvmsg");
    }
    int received = -1;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int passed;
        memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        if (received < 0) {
          received = passed;
        } else {
          close(passed);
        }
      }
    }
    if (received >= 0) return Napi::Number::New(env, received);
    if (n == 0) return ThrowErrno(env, ENOMSG, "recvmsg");
    // Payload without an fd: keep reading; the fd rides on a later byte.
  }
}

// Sends fd over a connected unix socket with SCM_RIGHTS and a one-byte payload (tests, tools).
static Napi::Value SendFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock, fd;
  if (!ArgFd(info, 0, "socket", &sock) || !ArgFd(info, 1, "fd", &fd)) return env.Undefined();
  char byte = 0;
  struct iovec iov = {&byte, 1};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  memset(control, 0, sizeof(control));
  struct msghdr msg;
  memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof(int));
  for (;;) {
    if (sendmsg(sock, &msg, MSG_NOSIGNAL) >= 0) return env.Undefined();
    if (errno != EINTR) return ThrowErrno(env, errno, "sendmsg");
  }
}

// connect(2) to a unix stream socket path; returns a blocking CLOEXEC fd (tests, tools).
// getsockopt(SO_PEERCRED) -> {pid, uid, gid}: who connected to a unix socket (the kernel's record
// of the peer at connect time, which the peer cannot forge).
static Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, "fd", &fd)) return env.Undefined();
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return ThrowErrno(env, errno, "getsockopt");
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

static Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (!ArgString(info, 0, "path", &path)) return env.Undefined();
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) return ThrowErrno(env, ENAMETOOLONG, "connect", path);
  memcpy(addr.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, errno, "socket");
  while (connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno == EINTR) continue;
    int err = errno;
    close(fd);
    return ThrowErrno(env, err, "connect", path);
  }
  return Napi::Number::New(env, fd);
}

// watchReadable(fd, cb) -> FdWatch: calls cb() on the event loop whenever fd is readable
// (level-triggered: read until EAGAIN or it fires again), cb(err) once on a poll error, after
// which the watch is closed. close() stops watching (it never closes fd); unref() lets the
// process exit while the watch is active. An active watch is kept alive until closed.
class FdWatch : public Napi::ObjectWrap<FdWatch> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdWatch",
                       {InstanceMethod<&FdWatch::Close>("close"), InstanceMethod<&FdWatch::Unref>("unref")});
  }

  explicit FdWatch(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatch>(info) {
    Napi::Env env = info.Env();
    int fd;
    if (!ArgFd(info, 0, "fd", &fd)) return;
    if (!info[1].IsFunction()) {
      ThrowType(env, "callback must be a function");
      return;
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      Napi::Error::New(env, "no event loop").ThrowAsJavaScriptException();
      return;
    }
    handle_ = new uv_poll_t;
    int rc = uv_poll_init(loop, handle_, fd);
    if (rc != 0) {
      delete handle_;
      handle_ = nullptr;
      ThrowErrno(env, -rc, "uv_poll_init");
      return;
    }
    handle_->data = this;
    rc = uv_poll_start(handle_, UV_READABLE, OnPoll);
    if (rc != 0) {
      CloseHandle();
      ThrowErrno(env, -rc, "uv_poll_start");
      return;
    }
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    Ref();  // not collected while active, even if JS drops it
  }

  ~FdWatch() override { CloseHandle(); }

 private:
  void CloseHandle() {
    if (handle_ == nullptr) return;
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
  }

  void Stop() {
    if (handle_ == nullptr) return;
    CloseHandle();
    callback_.Reset();
    Unref_();
  }

  void Unref_() { Napi::ObjectWrap<FdWatch>::Unref(); }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Stop();
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }

  static void OnPoll(uv_poll_t* handle, int status, int /*events*/) {
    FdWatch* self = static_cast<FdWatch*>(handle->data);
    if (self == nullptr) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    Napi::Function cb = self->callback_.Value();
    Napi::Object recv = self->Value();
    if (status < 0) {
      // Report once and stop; the callback gets an errno-shaped Error.
      self->Stop();
      ThrowErrno(env, -status, "uv_poll");
      Napi::Value err = env.GetAndClearPendingException().Value();
      cb.MakeCallback(recv, {err});
    } else {
      cb.MakeCallback(recv, {});
    }
    if (env.IsExceptionPending()) {
      // A throwing callback is an uncaught exception of the process, as for any event callback.
      napi_fatal_exception(env, env.GetAndClearPendingException().Value());
    }
  }

  uv_poll_t* handle_ = nullptr;
  Napi::FunctionReference callback_;
};

void InitFd(Napi::Env env, Napi::Object exports) {
  exports.Set("pipe", Napi::Function::New(env, Pipe, "pipe"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("lockExclusive", Napi::Function::New(env, LockExclusive, "lockExclusive"));
  exports.Set("tryLockExclusive", Napi::Function::New(env, TryLockExclusive, "tryLockExclusive"));
  exports.Set("setWinsize", Napi::Function::New(env, SetWinsize, "setWinsize"));
  exports.Set("eventfd", Napi::Function::New(env, EventFd, "eventfd"));
  exports.Set("unixListen", Napi::Function::New(env, UnixListen, "unixListen"));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect, "unixConnect"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept"));
  exports.Set("recvFd", Napi::Function::New(env, RecvFd, "recvFd"));
  exports.Set("sendFd", Napi::Function::New(env, SendFd, "sendFd"));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
  Napi::Function watch = FdWatch::Define(env);
  // watchReadable(fd, cb) is `new FdWatch(fd, cb)`; keep the class alive for the module's life.
  auto* ctor = new Napi::FunctionReference(Napi::Persistent(watch));
  env.SetInstanceData<Napi::FunctionReference>(ctor);
  exports.Set("watchReadable", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::FunctionReference* c = info.Env().GetInstanceData<Napi::FunctionReference>();
    return c->New({info[0], info[1]});
  }, "watchReadable"));
}

}  // namespace runcts
