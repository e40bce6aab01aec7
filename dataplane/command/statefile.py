"""State files: the routing state as requests, in sozu's format.

One JSON `WorkerRequest` per record (ids `SAVE-<n>`), records separated by `"\\n\\0"`. The same
format serves `state save`/`state load`, `saved_state` and a new worker's initial state, and
files written by sozu load here (addresses in sozu's `{"ip": {"inner": {"V4": n}}}` shape).

Reading never raises on a bad record: each one becomes an error string naming the record, so a
caller can load what is good and report the rest. Writing is atomic: a reader sees the old file
or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os

from dataplane.command.codec import DecodeError, decode, encode
from dataplane.command.messages import Request, WorkerRequest

SEPARATOR = b"\n\0"
MAX_STATE_FILE_SIZE = 512 * 1024 * 1024  # refuse to read anything bigger into memory


class StateFileError(OSError):
    """The file itself cannot be read or written (not: a bad record inside it)."""


def encode_state(requests: list[Request]) -> bytes:
    records = (
        encode(WorkerRequest(id=f"SAVE-{index}", content=request))
        for index, request in enumerate(requests)
    )
    return b"".join(record + SEPARATOR for record in records)


def decode_state(data: bytes) -> tuple[list[Request], list[str]]:
    """Good requests in file order, and one error string per bad record (1-based numbers)."""
    requests: list[Request] = []
    errors: list[str] = []
    # sozu ends every record with the separator; tolerate a missing final one, and blank
    # records (a trailing newline, an empty file).
    for number, record in enumerate(data.split(SEPARATOR), start=1):
        if not record.strip(b"\n\0 \t\r"):
            continue
        try:
            requests.append(decode(record, WorkerRequest).content)
        except DecodeError as error:
            errors.append(f"record {number}: {error}")
        except ValueError as error:  # e.g. a request_type holding zero or two verbs
            errors.append(f"record {number}: {error}")
    return requests, errors


def write_state_file(path: str | os.PathLike[str], requests: list[Request]) -> None:
    """Write atomically: a temporary file in the same directory, fsync, rename, fsync the dir."""
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    data = encode_state(requests)
    import tempfile  # main saves; a worker only reads: 0.6 MB with shutil, bz2 and lzma

    try:
        fd, temporary = tempfile.mkstemp(prefix=".state-", dir=directory)
    except OSError as error:
        raise StateFileError(f"cannot write state file {target}: {error.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
    except OSError as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise StateFileError(f"cannot write state file {target}: {error.strerror}") from None
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


def read_state_file(path: str | os.PathLike[str]) -> tuple[list[Request], list[str]]:
    """Read and decode a state file; raise StateFileError only if the file cannot be read."""
    target = os.fspath(path)
    try:
        with open(target, "rb") as file:
            data = file.read(MAX_STATE_FILE_SIZE + 1)
    except OSError as error:
        raise StateFileError(f"cannot read state file {target}: {error.strerror}") from None
    if len(data) > MAX_STATE_FILE_SIZE:
        raise StateFileError(f"state file {target} is larger than {MAX_STATE_FILE_SIZE} bytes")
    return decode_state(data)
