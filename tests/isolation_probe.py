"""A hostile job: try every way a job could read its worker's secrets; print JSON.

Run as a job's command (stdlib only, also in the worker image). The secrets to look for
come hex-encoded in $PROBE_NEEDLES (comma-separated), so this process's own environment
and argv never hold them in clear. $PROBE_DIRS (``:``-separated) are directories whose
files are read too (HODEI_HOME, the worker's home).

It prints one JSON object: ``found`` lists where a needle was seen; ``reachable`` lists
the hodei processes (its ancestors that run hodei, and the worker's orphan guard) whose
environ, memory, descriptors or ptrace were open to it, needle or not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys

NEEDLES = [bytes.fromhex(h) for h in os.environ.get("PROBE_NEEDLES", "").split(",") if h]
DIRS = [d for d in os.environ.get("PROBE_DIRS", "").split(":") if d]
MAX_FILES = 3000
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_MEM_BYTES = 512 * 1024 * 1024
PTRACE_SEIZE = 0x4206

found: list[str] = []
reachable: list[str] = []


def check(where: str, data: bytes) -> None:
    for i, needle in enumerate(NEEDLES):
        if needle and needle in data:
            found.append(f"{where} (needle {i})")


def read(path: str, limit: int = MAX_FILE_BYTES) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


def stat_ppid(pid: int) -> int:
    data = read(f"/proc/{pid}/stat") or b""
    try:
        return int(data.rsplit(b")", 1)[1].split()[1])
    except (IndexError, ValueError):
        return 0


def is_hodei(pid: int) -> bool:
    argv = (read(f"/proc/{pid}/cmdline") or b"").split(b"\0")
    return any(a == b"hodei" or a.endswith((b"/hodei", b"orphan_guard.py")) for a in argv)


def ancestors() -> list[int]:
    out, pid = [], os.getppid()
    while pid >= 1 and pid not in out:  # pid 1 too: a container's worker is its PID 1
        out.append(pid)
        pid = stat_ppid(pid)
    return out


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def scan_mem(pid: int) -> None:
    maps = read(f"/proc/{pid}/maps")
    try:
        mem = open(f"/proc/{pid}/mem", "rb")  # noqa: SIM115
    except OSError:
        return
    reachable.append(f"mem {pid}")
    with mem:
        total = 0
        for line in (maps or b"").splitlines():
            fields = line.split()
            if len(fields) < 2 or not fields[1].startswith(b"rw"):
                continue
            start, end = (int(x, 16) for x in fields[0].split(b"-"))
            if total + (end - start) > MAX_MEM_BYTES:
                break
            total += end - start
            try:
                mem.seek(start)
                check(f"mem {pid}", mem.read(end - start))
            except (OSError, OverflowError, ValueError):
                continue


def try_ptrace(pid: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    # SEIZE does not stop the process; the kernel detaches it when this job exits.
    if libc.ptrace(PTRACE_SEIZE, pid, None, None) == 0:
        reachable.append(f"ptrace {pid}")


def scan_fds(pid: int) -> None:
    """Its descriptors' targets (readlink) and contents (open), not only their numbers:
    the kernel checks ptrace access for those, and the listing may be open to a job
    running as root without capabilities even when they are not."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return
    opened = False
    for fd in fds:
        path = f"/proc/{pid}/fd/{fd}"
        try:
            check(f"fd link {pid}/{fd}", os.readlink(path).encode())
            opened = True
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        except OSError:
            continue
    if opened:
        reachable.append(f"fd {pid}")


def own_descriptors() -> list[str]:
    """Descriptors this job inherited beyond stdin/out/err (a socket, a database file)."""
    extra = []
    for fd in os.listdir("/proc/self/fd"):
        if int(fd) > 2:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue  # the listing's own descriptor, closed by now
            if not target.startswith("/proc/"):
                extra.append(target)
    return extra


def scan_dirs() -> int:
    seen = 0
    for top in DIRS:
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith((".cache", ".venv", "node_modules"))]
            for name in files:
                seen += 1
                if seen > MAX_FILES:
                    return seen
                data = read(os.path.join(root, name))
                if data is not None:
                    check(f"file {os.path.join(root, name)}", data)
    return seen


def main() -> None:
    lineage = ancestors()
    guards = [
        p
        for p in all_pids()
        if p not in lineage and stat_ppid(p) in lineage and is_hodei(p) and p != os.getpid()
    ]
    for pid in all_pids():
        if pid == os.getpid():
            continue
        check(f"environ {pid}", read(f"/proc/{pid}/environ") or b"")
        check(f"cmdline {pid}", read(f"/proc/{pid}/cmdline") or b"")
    targets = [p for p in lineage if is_hodei(p)] + guards
    for pid in targets:
        if read(f"/proc/{pid}/environ"):
            reachable.append(f"environ {pid}")
        scan_fds(pid)
        scan_mem(pid)
        try_ptrace(pid)
    check("own environment", b"\0".join(f"{k}={v}".encode() for k, v in os.environ.items()))
    files = scan_dirs()
    report = {
        "uid": os.getuid(),
        "cwd": os.getcwd(),
        "hodei_processes": targets,
        "found": found,
        "reachable": reachable,
        "inherited_fds": own_descriptors(),
        "files_read": files,
    }
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
