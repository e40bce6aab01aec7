"""Reading CPU time and memory of processes from /proc (Linux only).

The parsing functions take the file's text so that they are unit-testable without processes.
"""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def parse_stat(text: str) -> tuple[int, int, int]:
    """(ppid, utime + stime, start time) in clock ticks from the text of /proc/<pid>/stat.

    The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
    """
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15, starttime 22.
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19])


def parse_cpu_ticks(text: str) -> tuple[int, int]:
    """(utime, stime) in clock ticks from the text of /proc/<pid>/stat."""
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]), int(fields[12])


def parse_vmrss_kib(text: str) -> int:
    """The VmRSS line of /proc/<pid>/status, in KiB (0 for a zombie, which has none)."""
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def process_tree(root: int) -> list[int]:
    """root and all its living descendants (one scan of /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        text = _read(f"/proc/{entry}/stat")
        if text is not None:
            children.setdefault(parse_stat(text)[0], []).append(int(entry))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, ()))
    return tree


def identities(pids: list[int]) -> dict[int, int]:
    """pid -> start time, to recognise these processes later (a pid may be reused)."""
    found = {}
    for pid in pids:
        text = _read(f"/proc/{pid}/stat")
        if text is not None:
            found[pid] = parse_stat(text)[2]
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by these processes (gone ones count 0)."""
    ticks = 0
    for pid in pids:
        text = _read(f"/proc/{pid}/stat")
        if text is not None:
            ticks += parse_stat(text)[1]
    return ticks / CLOCK_TICKS_PER_S


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds consumed so far by these processes (gone ones count 0)."""
    user = system = 0
    for pid in pids:
        text = _read(f"/proc/{pid}/stat")
        if text is not None:
            utime, stime = parse_cpu_ticks(text)
            user, system = user + utime, system + stime
    return user / CLOCK_TICKS_PER_S, system / CLOCK_TICKS_PER_S


def rss_bytes(pids: list[int]) -> int:
    """Sum of the resident set sizes of these processes."""
    total = 0
    for pid in pids:
        text = _read(f"/proc/{pid}/status")
        if text is not None:
            total += parse_vmrss_kib(text) * 1024
    return total
