// Names the calling thread, so that top -H, perf and gdb tell kubetrail's
// threads apart (every one was "kubetrail": a profile had to be read by
// each thread's root frame). Linux keeps 15 bytes of a name; a longer one
// is cut here rather than refused (pthread_setname_np fails with ERANGE).
#pragma once

#include <pthread.h>

#include <algorithm>
#include <cstring>
#include <string_view>

namespace kubetrail {

inline void name_this_thread(std::string_view name) noexcept {
  char buf[16];
  size_t n = std::min(name.size(), sizeof buf - 1);
  std::memcpy(buf, name.data(), n);
  buf[n] = '\0';
  pthread_setname_np(pthread_self(), buf);
}

}  // namespace kubetrail
