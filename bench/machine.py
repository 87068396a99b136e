"""How busy the machine is: the benchmark shares its CPUs with whatever else runs.

Timed results are only meaningful if the measured processes had the CPUs to
themselves, so both benchmarks compare the machine's busy CPU time over a
run with the CPU time of the processes they started, and report the rest.
"""

from __future__ import annotations

import os

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


# /proc/PID/stat flags bit of kernel threads (include/linux/sched.h).
_PF_KTHREAD = 0x00200000


def machine_busy_s() -> float:
    """CPU seconds user-space processes have run, user + system, on the whole machine.

    From the first line of /proc/stat, less the kernel threads: irq and
    softirq time, ksoftirqd and kworkers are mostly the kernel moving the
    benchmark's own packets through the veth, not another program's work.
    """
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    return (fields[0] + fields[1] + fields[2]) * _TICK_S - kernel_threads_cpu_s()


def kernel_threads_cpu_s() -> float:
    """User + system CPU seconds of every kernel thread (they live long, so a difference of two calls is right)."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is stat field 3; flags is field 9, utime and stime 14 and 15.
        if int(fields[6]) & _PF_KTHREAD:
            total += int(fields[11]) + int(fields[12])
    return total * _TICK_S


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process, all its threads (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            # The command name (field 2) may hold spaces: split after its ")".
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def tree_cpu_s(pid: int) -> float:
    """``process_cpu_s`` summed over ``pid`` and its live descendants (sniffd's worker processes)."""
    total = 0.0
    stack = [pid]
    while stack:
        p = stack.pop()
        total += process_cpu_s(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children", encoding="ascii") as f:
                    stack += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total
