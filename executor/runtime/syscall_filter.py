"""The seccomp filter of every handler process (bubblewrap loads it with ``--seccomp`` just before
it runs the handler), modelled on Docker's default profile: allow by default, deny what a
function never needs and what has been the way out of sandboxes. The program is compiled once
with libseccomp (through ``pyseccomp``); another architecture's system calls kill the process.
"""

from __future__ import annotations

import errno
import logging
import tempfile

log = logging.getLogger("computebus.sandbox")

# Each denied call answers EPERM; the README's security model lists the same groups.
DENIED: dict[str, tuple[str, ...]] = {
    "kernel keyrings (shared by uid, outlive the sandbox)": ("add_key", "keyctl", "request_key"),
    "new namespaces, mounts and root changes": (
        "unshare",
        "setns",
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "move_mount",
        "open_tree",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "mount_setattr",
    ),
    "kernel code and tracing surfaces": (
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
    ),
    "other processes' memory": ("ptrace", "process_vm_readv", "process_vm_writev", "kcmp"),
    "the machine itself": (
        "kexec_load",
        "kexec_file_load",
        "reboot",
        "init_module",
        "finit_module",
        "delete_module",
        "swapon",
        "swapoff",
        "acct",
        "syslog",
        "settimeofday",
        "clock_settime",
        "clock_adjtime",
        "iopl",
        "ioperm",
        "quotactl",
        "lookup_dcookie",
        "vhangup",
    ),
    "file handles that bypass paths (the classic container escape)": (
        "open_by_handle_at",
        "name_to_handle_at",
        "fanotify_init",
    ),
    "NUMA placement": ("mbind", "set_mempolicy", "migrate_pages", "move_pages"),
}
CLONE_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
AF_VSOCK = 40
AF_NETLINK, NETLINK_KOBJECT_UEVENT = 16, 15  # the host's device events, even in a new netns
TIOCSTI = 0x5412  # push characters into a terminal's input
# personality() bits that weaken the address space (no ASLR, executable data, page zero).
PERSONALITY_BITS = (0x0040000, 0x0400000, 0x0200000, 0x0100000)


def compile_filter() -> bytes | None:
    """The BPF program, or None where libseccomp is missing (then the level reports the gap)."""
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError) as exc:  # OSError: libseccomp.so.2 is not installed
        log.warning("no seccomp filter for handler processes: %s", exc)
        return None
    deny = seccomp.ERRNO(errno.EPERM)
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for calls in DENIED.values():
        for call in calls:
            try:
                f.add_rule(deny, call)
            except (RuntimeError, ValueError, OSError):  # not a call on this architecture
                log.debug("seccomp: %s is not a system call here", call)
    for bit in _bits(CLONE_NAMESPACE_FLAGS):  # a rule compares for equality: one per flag
        f.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, bit, bit))
    # clone3 passes its flags in memory, out of a filter's reach: ENOSYS makes libc use clone.
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, AF_VSOCK))
    f.add_rule(
        deny,
        "socket",
        seccomp.Arg(0, seccomp.EQ, AF_NETLINK),
        seccomp.Arg(2, seccomp.EQ, NETLINK_KOBJECT_UEVENT),
    )
    f.add_rule(deny, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
    for bit in PERSONALITY_BITS:
        f.add_rule(deny, "personality", seccomp.Arg(0, seccomp.MASKED_EQ, bit, bit))
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        program: bytes = out.read()
    return program


def _bits(mask: int) -> list[int]:
    return [1 << i for i in range(mask.bit_length()) if mask & (1 << i)]
