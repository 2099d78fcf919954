#include "sys/privileges.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "sys/fd.hpp"

namespace us::sys {

namespace {
struct CapFree {
  void operator()(void* p) const { cap_free(p); }
};
using CapPtr = std::unique_ptr<std::remove_pointer_t<cap_t>, CapFree>;

bool kept(std::span<const int> keep, int cap) {
  return std::find(keep.begin(), keep.end(), cap) != keep.end();
}
}  // namespace

Result<Account, std::string> find_account(const std::string& name) {
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  int err = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
  if (err != 0) return Err{errno_text(("looking up user \"" + name + "\"").c_str(), err)};
  if (found == nullptr) return Err{"no user \"" + name + "\" on this host"};
  return Account{name, pw.pw_uid, pw.pw_gid};
}

Result<Ok, std::string> drop_to(const Account& account, std::span<const int> keep) {
  // The bounding set first: shrinking it needs CAP_SETPCAP, which the uid change takes away.
  for (int cap = 0; cap <= static_cast<int>(cap_max_bits()) - 1; ++cap) {
    if (kept(keep, cap) || !CAP_IS_SUPPORTED(cap)) continue;
    if (cap_drop_bound(static_cast<cap_value_t>(cap)) != 0)
      return Err{errno_text("dropping a capability from the bounding set")};
  }
  // Without KEEPCAPS, leaving uid 0 would clear the permitted set, `keep` included.
  if (::prctl(PR_SET_KEEPCAPS, 1L, 0L, 0L, 0L) != 0) return Err{errno_text("PR_SET_KEEPCAPS")};
  if (::setgroups(0, nullptr) != 0) return Err{errno_text("setgroups")};
  if (::setresgid(account.gid, account.gid, account.gid) != 0) return Err{errno_text("setresgid")};
  if (::setresuid(account.uid, account.uid, account.uid) != 0) return Err{errno_text("setresuid")};
  if (::prctl(PR_SET_KEEPCAPS, 0L, 0L, 0L, 0L) != 0) return Err{errno_text("PR_SET_KEEPCAPS")};

  CapPtr caps(cap_init());
  if (!caps) return Err{errno_text("cap_init")};
  std::vector<cap_value_t> values(keep.begin(), keep.end());
  if (!values.empty()) {
    auto n = static_cast<int>(values.size());
    if (cap_set_flag(caps.get(), CAP_PERMITTED, n, values.data(), CAP_SET) != 0 ||
        cap_set_flag(caps.get(), CAP_EFFECTIVE, n, values.data(), CAP_SET) != 0)
      return Err{errno_text("cap_set_flag")};
  }
  if (cap_set_proc(caps.get()) != 0) return Err{errno_text("cap_set_proc")};
  if (cap_reset_ambient() != 0) return Err{errno_text("clearing the ambient capabilities")};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) != 0) return Err{errno_text("no_new_privs")};

  // Check rather than trust: a drop that silently did less is worse than none.
  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  if (::getresuid(&ru, &eu, &su) != 0 || ::getresgid(&rg, &eg, &sg) != 0 || ru != account.uid ||
      eu != account.uid || su != account.uid || rg != account.gid || eg != account.gid ||
      sg != account.gid || ::getgroups(0, nullptr) != 0)
    return Err{"the uid or gid did not change to " + account.name + "'s"};
  if (account.uid != 0 && ::setuid(0) == 0) return Err{std::string("uid 0 could be taken back")};
  CapPtr now(cap_get_proc());
  if (!now || cap_compare(now.get(), caps.get()) != 0)
    return Err{std::string("the capability sets are not the ones asked for")};
  return Ok{};
}

std::string capability_names(std::span<const int> caps) {
  std::string out;
  for (int cap : caps) {
    std::unique_ptr<char, CapFree> name(cap_to_name(static_cast<cap_value_t>(cap)));
    out += (out.empty() ? "" : ", ") + std::string(name ? name.get() : "?");
  }
  return out.empty() ? "none" : out;
}

}  // namespace us::sys
