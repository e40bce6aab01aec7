"""State files (statefile.py): what `state load`, `saved_state` and a booting worker read.

The input is a state file's bytes: JSON `WorkerRequest` records separated by `"\\n\\0"`.
`decode_state` is documented never to raise: each bad record becomes an error string. The
good requests are then applied in order to a `ConfigState`, as `state load` and a worker do.

Expected answers to bad input: error strings from `decode_state` (it raises nothing), and
`StateError` from `dispatch`. Anything else raised is a crash. Properties checked (an
AssertionError is a finding too): the good requests saved again load back equal with no error,
and the state they built, saved as requests (`generate_requests`) and replayed, is the same
state (what `state save` writes, `state load` reads).
"""

from __future__ import annotations

import contextlib

from dataplane.command.messages import STATE_VERBS
from dataplane.command.state import ConfigState, StateError
from dataplane.command.state_diff import generate_requests
from dataplane.command.statefile import decode_state, encode_state

MAX_LEN = 8192
DICTIONARY = (
    b"\n\x00",
    b'{"id":"SAVE-0","content":{"request_type":{',
    b'"ADD_CLUSTER":{"cluster_id":"a"}}}}',
    b'"ADD_HTTP_LISTENER":{"address":"127.0.0.1:8080"}}}}',
    b'"ADD_HTTPS_LISTENER":{"address":"127.0.0.1:8443"}}}}',
    b'"ACTIVATE_LISTENER":{"address":"127.0.0.1:8080","proxy":0}}}}',
    b'"ADD_HTTP_FRONTEND":{"cluster_id":"a","address":"127.0.0.1:8080","hostname":"a"}}}}',
    b'"ADD_BACKEND":{"cluster_id":"a","backend_id":"b","address":"127.0.0.1:9000"}}}}',
    b'"REMOVE_BACKEND":{"cluster_id":"a","backend_id":"b","address":"127.0.0.1:9000"}}}}',
    b'"path":{"kind":2,"value":"/a"}',
    b'"address":{"ip":{"inner":{"V6":{"high":0,"low":1}}},"port":80}',
)


def one_input(data: bytes) -> None:
    requests, errors = decode_state(data)
    assert all(isinstance(error, str) for error in errors)
    again, again_errors = decode_state(encode_state(requests))
    assert again == requests and not again_errors, again_errors
    state = ConfigState()
    for request in requests:
        if request.verb in STATE_VERBS:
            with contextlib.suppress(StateError):
                state.dispatch(request)
    replayed = ConfigState()
    for request in generate_requests(state):
        replayed.dispatch(request)  # a StateError here is a finding: the state made it
    assert replayed == state
