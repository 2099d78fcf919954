// Least privilege, the mechanism (issue 10, item 6): once the node holds every socket and device
// it opens as root, it becomes an ordinary user that keeps only the capabilities it still uses at
// run time and can never gain more. The policy (which user, which capabilities and why) is in
// node/host.hpp; the system-call allow-list that follows the drop is in sys/seccomp.hpp.
#pragma once
#include <sys/types.h>

#include <span>
#include <string>

#include "common/result.hpp"

namespace us::sys {

struct Account {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;  // the user's primary group
};

// The user database's entry for `name`. Fails with "no user \"name\" on this host".
Result<Account, std::string> find_account(const std::string& name);

// Becomes `account`: no supplementary groups, real, effective and saved uid and gid all the
// account's; `keep` (CAP_* numbers) stay permitted and effective and are the only ones left in the
// bounding set; nothing inheritable or ambient; no_new_privs set (also what lets an unprivileged
// process load a seccomp filter). Must be called as root with a single thread. It checks its own
// work (the uids, the sets, that uid 0 cannot be taken back) and fails with one line naming the
// step; a node whose drop failed must not serve.
Result<Ok, std::string> drop_to(const Account& account, std::span<const int> keep);

// "cap_net_admin, cap_net_raw" (libcap's names), "none" for an empty list.
std::string capability_names(std::span<const int> caps);

}  // namespace us::sys
