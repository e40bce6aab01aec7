"""`command_allowed_uids` decisions (dataplane.main.peer.refusal), as sozu 2.1 makes them."""

from __future__ import annotations

from dataplane.main.peer import Peer, refusal


def test_no_allowlist_allows_everybody() -> None:
    assert refusal(None, Peer(uid=1234)) is None
    assert refusal(None, Peer()) is None


def test_a_listed_uid_is_allowed_others_are_refused_with_sozus_words() -> None:
    assert refusal([0, 1000], Peer(uid=1000)) is None
    assert refusal([1000], Peer(uid=0)) == ("unauthorized: actor UID 0 not in command_allowed_uids")


def test_an_empty_list_refuses_everybody() -> None:
    assert refusal([], Peer(uid=0)) is not None


def test_unreadable_credentials_are_refused() -> None:
    assert refusal([0], Peer()) == "unauthorized: actor UID unknown not in command_allowed_uids"
