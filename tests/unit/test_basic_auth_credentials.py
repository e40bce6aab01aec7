"""Basic auth entries: sozu's SHA-256 hex digests and htpasswd hashes (a pysozu extension),
refused formats, and the verdict cache that spares a logged-in client its bcrypt."""

from __future__ import annotations

import base64
import hashlib

import pytest
from passlib.hash import apr_md5_crypt, bcrypt, des_crypt, ldap_sha1, sha512_crypt

from dataplane.command.credential_formats import CredentialError, split_entry
from dataplane.command.messages import Cluster, Request
from dataplane.command.state import ConfigState
from dataplane.command.state_rules import StateError
from dataplane.proxy.routing import credentials as credentials_module
from dataplane.proxy.routing.credentials import CACHE_SIZE, Credentials

pytestmark = pytest.mark.timeout(20)


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


ENTRIES = {
    "sha256": "alice:" + hashlib.sha256(b"s3cret").hexdigest(),
    "bcrypt": "bob:" + bcrypt.using(rounds=4, ident="2y").hash("s3cret"),
    "apr1": "carol:" + apr_md5_crypt.hash("s3cret"),
    "sha1": "dave:" + ldap_sha1.hash("s3cret"),
    "des": "erin:" + des_crypt.hash("s3cret"),
}


@pytest.mark.parametrize("kind", sorted(ENTRIES))
def test_each_format_lets_the_right_password_in_and_no_other(kind: str) -> None:
    entry = ENTRIES[kind]
    user = entry.partition(":")[0]
    assert split_entry(entry)[1] == kind
    credentials = Credentials([entry])
    assert credentials.check(basic(user, "s3cret"))
    assert not credentials.check(basic(user, "wrong"))
    assert not credentials.check(basic("mallory", "s3cret"))
    assert not credentials.check(None)
    assert not credentials.check(b"Bearer abc")
    assert not credentials.check(b"Basic !!notbase64")
    assert not credentials.check(b"Basic " + base64.b64encode(b"nocolon"))


def test_a_user_may_have_several_entries() -> None:
    other = "alice:" + apr_md5_crypt.hash("other")
    credentials = Credentials([ENTRIES["sha256"], other])
    assert credentials.check(basic("alice", "s3cret")) and credentials.check(
        basic("alice", "other")
    )


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ("nocolon", "not user:hash"),
        (":" + "a" * 64, "not user:hash"),
        ("u:abcd", "not a SHA-256 hex digest or an htpasswd hash"),
        ("u:" + sha512_crypt.using(rounds=1000).hash("x"), "SHA-256/512-crypt"),
        ("u:$2y$13$" + "a" * 53, "cost 13"),
    ],
)
def test_formats_that_cannot_be_checked_are_refused_with_the_user_named(
    entry: str, said: str
) -> None:
    with pytest.raises(CredentialError, match=said.replace("$", r"\$")):
        split_entry(entry)
    state = ConfigState()
    with pytest.raises(StateError, match="authorized_hashes"):
        state.dispatch(Request.of(add_cluster=Cluster(cluster_id="c", authorized_hashes=[entry])))


def test_a_verdict_is_reached_once_per_password(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = credentials_module._verifier

    def counting(kind: str, stored: str):  # type: ignore[no-untyped-def]
        check = real(kind, stored)

        def wrapped(password: bytes) -> bool:
            calls.append(password)
            return check(password)

        return wrapped

    monkeypatch.setattr(credentials_module, "_verifier", counting)
    credentials = Credentials([ENTRIES["bcrypt"]])
    for _ in range(5):
        assert credentials.check(basic("bob", "s3cret"))
        assert not credentials.check(basic("bob", "wrong"))
    assert calls == [b"s3cret", b"wrong"]
    for n in range(CACHE_SIZE + 1):  # bounded: emptied when full, then filled again
        credentials.check(basic("bob", f"guess{n}"))
    assert len(credentials._cache) <= CACHE_SIZE
