import os

from harness import procfs

# Field 2 (comm) may hold spaces and parentheses; utime is field 14, stime field 15.
STAT = (
    "4242 (py (weird) name) S 17 4242 4242 0 -1 4194560 1000 0 0 0 "
    "250 31 0 0 20 0 1 0 100 12345678 2000 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0"
)


def test_stat_fields_are_read_after_the_command_name():
    assert procfs.parse_stat(STAT) == (17, 250 + 31, 100)
    assert procfs.parse_cpu_ticks(STAT) == (250, 31)


def test_vmrss_is_read_in_kib():
    text = "Name:\tnginx\nVmPeak:\t  9000 kB\nVmRSS:\t    11264 kB\nThreads:\t1\n"
    assert procfs.parse_vmrss_kib(text) == 11264
    assert procfs.parse_vmrss_kib("Name:\tzombie\nState:\tZ\n") == 0


def test_this_process_is_measured():
    pid = os.getpid()
    assert procfs.process_tree(pid)[0] == pid
    assert procfs.cpu_seconds([pid]) > 0
    assert procfs.rss_bytes([pid]) > 1_000_000
    assert procfs.cpu_seconds([2**22 + 12345]) == 0  # a pid that cannot exist counts nothing
    user, system = procfs.cpu_split([pid])
    assert user > 0 and system >= 0
    assert user + system <= procfs.cpu_seconds([pid]) + 1e-9  # the same ticks, read later
    assert procfs.identities([pid, 2**22 + 12345]).keys() == {pid}
