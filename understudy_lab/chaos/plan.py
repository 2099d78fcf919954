"""A chaos trial's plan: the fault points, and everything random about a trial from its seed."""

import random

# Fault points per role (docs/FAULTS.md) and the range of N for POINT:N under this load.
FAULTS = {
    "primary": {"primary.before_ack": 200, "primary.reply_read": 100,
                "primary.reply_acked": 100, "primary.reply_written": 200},
    "backup": {"backup.request_partial": 3, "backup.before_relay": 200,
               "backup.request_complete": 100, "backup.reply_received": 200},
}
OTHER = {"primary": "backup", "backup": "primary"}




def trial_plan(tseed, role, loss, dup, phases):
    """Everything random about a trial, from its seed alone."""
    rng = random.Random(tseed)
    kind = rng.choice(phases)
    plan = {"seed": tseed, "role": role, "loss": loss, "dup": dup,
            "crash_after": round(rng.uniform(0.2, 1.2), 3),   # s of steady load before the crash
            "client_seed": rng.getrandbits(32),
            "big": rng.random() < 0.12}                       # one 64 MiB GET in ~1 trial of 8
    if kind == "fault":
        point = rng.choice(sorted(FAULTS[role]))
        plan["crash"] = f"{point}:{rng.randint(1, FAULTS[role][point])}"
    else:
        plan["crash"] = "random"
        rng.random()
    return plan


def replay_cmd(plan, target, binary_note=""):
    return (f"chaos/run --trial-seed {plan['seed']} --roles {plan['role']} --loss {plan['loss']} "
            f"--dup {plan['dup']} --target {target}")
