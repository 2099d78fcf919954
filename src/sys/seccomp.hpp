// The system-call allow-list of the serving daemon (issue 10, item 6), loaded with libseccomp after
// the privilege drop (sys/privileges.hpp). The list is what the node calls once it is serving,
// found with `strace -f` over the lab suite (docs/ARCHITECTURE.md, "Least privilege"): descriptor
// I/O and epoll, TCP and UDP sockets to its server and peer, memory, time, randomness for channel
// nonces, and the fault points' link-down and self-kill. It opens no file and starts no program.
//
// A call outside the list is a bug (or an attacker): the process writes one line to stderr,
// "seccomp: refused system call execve (59): ...", and dies by SIGSYS. Refusing with EPERM instead
// would leave a node running whose next reconnect or accept fails in a way nothing expects;
// dying is the fail-stop the pair is built for (the peer takes over) and is seen at once.
#pragma once
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace us::sys {

// The system calls allowed with any arguments, and those allowed with some arguments only
// (socket, ioctl, kill, tgkill, mmap; seccomp.cpp says which).
std::span<const std::string_view> allowed_syscalls();
std::span<const std::string_view> restricted_syscalls();

// Builds the filter without loading it and returns its size in BPF instructions. Fails with one
// line if a name is unknown on this architecture or libseccomp refuses a rule.
Result<size_t, std::string> build_syscall_filter();

// What a call outside the list does: Stop as above; Log lets it through (the kernel's audit log
// records it), for builds whose sanitizer runtime makes calls the node never does (the leak
// check's clone and ptrace at exit).
enum class OnRefused { Stop, Log };

// Installs the SIGSYS reporter and loads the filter into this process (and any thread it starts
// later); it cannot be undone. Needs no_new_privs (or CAP_SYS_ADMIN). Returns the filter's size.
Result<size_t, std::string> install_syscall_filter(OnRefused on = OnRefused::Stop);

}  // namespace us::sys
