"""Certificates changed at run time with the real CLI, and HTTPS listeners added at run time:
add / replace (under load) / remove / list, bad certificates refused with a reason while the
served ones keep working."""

from __future__ import annotations

import datetime
import http.client
import json
import os
import signal
import ssl
import threading
import time
from pathlib import Path

import pytest
from https_support import Pki, TlsClient, https_config, insecure_context, served_fingerprint
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def ca_chain(pki: Pki) -> str:
    path = pki.directory / "ca-chain.pem"
    pki.ca.cert_pem.write_to_path(str(path))
    return str(path)


def fingerprint_on(port: int, sni: str) -> str:
    with TlsClient(port, sni, insecure_context()) as client:
        return served_fingerprint(client.sock)


def test_add_replace_remove_and_list(pysozu, backends, pki) -> None:
    first = pki.issue("a.example")
    port = pysozu.free_port()
    proxy = pysozu.start(
        https_config(port, {"a": ("a.example", backends.start("app-a"), first)}), workers=2
    )
    address = f"127.0.0.1:{port}"
    second = pki.issue("c.example")
    added = proxy.cli(
        "certificate", "add", "-a", address, "--certificate", second["certificate"],
        "--certificate-chain", ca_chain(pki), "--key", second["key"],
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    assert fingerprint_on(port, "c.example") == second["fingerprint"]

    listed = proxy.cli("-j", "certificate", "list")
    assert listed.returncode == 0, listed.stderr
    assert first["fingerprint"] in listed.stdout and second["fingerprint"] in listed.stdout
    by_domain = proxy.cli("-j", "certificate", "list", "-d", "c.example")
    assert second["fingerprint"] in by_domain.stdout
    assert first["fingerprint"] not in by_domain.stdout
    json.loads(listed.stdout)

    removed = proxy.cli("certificate", "remove", "-a", address, "-f", second["fingerprint"])
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert fingerprint_on(port, "c.example") != second["fingerprint"]  # the default now
    assert fingerprint_on(port, "a.example") == first["fingerprint"]


def test_replace_under_load_answers_every_request(pysozu, backends, pki) -> None:
    old = pki.issue("a.example")
    port = pysozu.free_port()
    proxy = pysozu.start(https_config(port, {"a": ("a.example", backends.start("app-a"), old)}))
    statuses: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def keep_alive_client() -> None:
        try:
            with TlsClient(port, "a.example", pki.client_context()) as client:
                # Bounded by `stop` (set within about 2 s of the replace) and a count high
                # enough that a fast proxy cannot finish before the replace has returned.
                while not stop.is_set() and len(statuses) < 200_000:
                    statuses.append(client.get("a.example").status)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    worker = threading.Thread(target=keep_alive_client)
    worker.start()
    new = pki.issue("a.example")
    try:
        replaced = proxy.cli(
            "certificate", "replace", "-a", f"127.0.0.1:{port}",
            "--new-certificate", new["certificate"], "--new-certificate-chain", ca_chain(pki),
            "--new-key", new["key"], "-f", old["fingerprint"],
        )  # fmt: skip
        assert replaced.returncode == 0, replaced.stdout + replaced.stderr
        count = len(statuses)
        for _ in range(200):  # the old connection keeps being served after the replace
            if len(statuses) > count + 20:
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        worker.join(30)
    assert not errors, errors
    assert len(statuses) > count and set(statuses) == {200}
    for _ in range(2):  # each worker: new connections get the new certificate
        with TlsClient(port, "a.example", pki.client_context()) as client:
            assert served_fingerprint(client.sock) == new["fingerprint"]
            assert client.get("a.example").status == 200


def _bad_certificates(pki: Pki) -> dict[str, tuple[str, str, str]]:
    """name -> (certificate path, chain path, key path)."""
    good = pki.issue("bad.example")
    other = pki.issue("other.example")
    garbage = pki.directory / "garbage.pem"
    garbage.write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    )
    intermediate = pki.ca.create_child_ca()
    leaf = intermediate.issue_cert("chained.example")
    chained_cert = pki.directory / "chained.pem"
    chained_key = pki.directory / "chained-key.pem"
    wrong_order = pki.directory / "wrong-order.pem"
    chained_cert.write_bytes(leaf.cert_chain_pems[0].bytes())
    chained_key.write_bytes(leaf.private_key_pem.bytes())
    wrong_order.write_bytes(pki.ca.cert_pem.bytes() + leaf.cert_chain_pems[1].bytes())
    chain = ca_chain(pki)
    return {
        "unparsable": (str(garbage), chain, good["key"]),
        "key mismatch": (good["certificate"], chain, other["key"]),
        "chain order": (str(chained_cert), str(wrong_order), str(chained_key)),
    }


def test_bad_certificates_are_refused_and_served_ones_keep_working(pysozu, backends, pki) -> None:
    served = pki.issue("a.example")
    port = pysozu.free_port()
    proxy = pysozu.start(https_config(port, {"a": ("a.example", backends.start("app-a"), served)}))
    with TlsClient(port, "a.example", pki.client_context()) as before:
        assert before.get("a.example").status == 200
        for name, (cert, chain, key) in _bad_certificates(pki).items():
            result = proxy.cli(
                "certificate", "add", "-a", f"127.0.0.1:{port}", "--certificate", cert,
                "--certificate-chain", chain, "--key", key,
            )  # fmt: skip
            output = (result.stdout + result.stderr).lower()
            assert result.returncode != 0, f"{name}: accepted"
            reason = {
                "unparsable": "pem",
                "key mismatch": "key does not match",
                "chain order": "chain out of order",
            }[name]
            assert reason in output, f"{name}: {output}"
            assert before.get("a.example").status == 200  # the live connection is untouched
    with TlsClient(port, "a.example", pki.client_context()) as after:
        assert served_fingerprint(after.sock) == served["fingerprint"]
        assert after.get("a.example").status == 200


def test_https_listener_added_updated_removed_at_run_time(pysozu, backends, pki) -> None:
    http_port, https_port = pysozu.free_port(), pysozu.free_port()
    app = backends.start("app-a")
    proxy = pysozu.start(pysozu.http_config(http_port, {"a": ("a.example", [app])}))
    address = f"127.0.0.1:{https_port}"
    cert = pki.issue("a.example")
    steps = [
        ("listener", "https", "add", "-a", address),
        ("listener", "https", "activate", "-a", address),
        ("certificate", "add", "-a", address, "--certificate", cert["certificate"],
         "--certificate-chain", ca_chain(pki), "--key", cert["key"]),
        ("frontend", "https", "add", "-a", address, "--hostname", "a.example", "id", "a"),
    ]  # fmt: skip
    for step in steps:
        result = proxy.cli(*step)
        assert result.returncode == 0, f"{step}: {result.stdout}{result.stderr}"
    for _ in range(4):  # both workers serve it (they share one accept queue)
        with TlsClient(https_port, "a.example", pki.client_context()) as client:
            response = client.get("a.example")
            assert (response.status, response.body) == (200, b"app-a")
    # the plain HTTP listener is unaffected by the SCM exchange of the HTTPS one
    assert pysozu.http_get(http_port, "a.example")[0] == 200

    update = proxy.cli(
        "listener",
        "https",
        "update",
        "-a",
        address,
        "--hsts-max-age",
        "60",
        "--no-strict-sni-binding",
    )
    assert update.returncode == 0, update.stdout + update.stderr
    with TlsClient(https_port, "a.example", pki.client_context()) as client:
        response = client.get("a.example")
        assert response.getheader("Strict-Transport-Security") == "max-age=60"
        assert client.get("other.example").status == 404  # not 421: binding turned off

    h2_only = proxy.cli("listener", "https", "update", "-a", address, "--disable-http11")
    assert h2_only.returncode == 0, h2_only.stdout + h2_only.stderr
    with (  # HTTP/1.1 clients are refused now
        pytest.raises((ssl.SSLError, ConnectionError, OSError, http.client.HTTPException)),
        TlsClient(https_port, "a.example", pki.client_context()) as client,
    ):
        client.get("a.example").read()
    h2_context = pki.client_context()
    h2_context.set_alpn_protocols(["h2"])
    with TlsClient(https_port, "a.example", h2_context) as client:
        assert client.sock.selected_alpn_protocol() == "h2"  # HTTP/2 ones are served

    for verb in ("deactivate", "remove"):
        if verb == "remove":
            proxy.cli("frontend", "https", "remove", "-a", address, "--hostname", "a.example",
                      "id", "a")  # fmt: skip
            proxy.cli("certificate", "remove", "-a", address, "-f", cert["fingerprint"])
        result = proxy.cli("listener", "https", verb, "-a", address)
        assert result.returncode == 0, f"{verb}: {result.stdout}{result.stderr}"
    with pytest.raises(OSError):
        TlsClient(https_port, "a.example", pki.client_context(), timeout=2).close()
    assert pysozu.http_get(http_port, "a.example")[0] == 200


def test_a_relaunched_worker_serves_the_certificates_added_at_run_time(
    pysozu, backends, pki
) -> None:
    first = pki.issue("a.example")
    port = pysozu.free_port()
    proxy = pysozu.start(https_config(port, {"a": ("a.example", backends.start("app-a"), first)}))
    added = pki.issue("a.example", "www.a.example")
    result = proxy.cli(
        "certificate", "replace", "-a", f"127.0.0.1:{port}",
        "--new-certificate", added["certificate"], "--new-certificate-chain", ca_chain(pki),
        "--new-key", added["key"], "-f", first["fingerprint"],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    old = proxy.workers()[0]
    os.kill(old.pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        workers = proxy.workers()
        if workers and all(w.pid != old.pid for w in workers):
            break
        time.sleep(0.1)
    proxy.wait_ready(2)
    for _ in range(12):  # both workers, the relaunched one included (shared accept queue)
        with TlsClient(port, "www.a.example", pki.client_context()) as client:
            assert served_fingerprint(client.sock) == added["fingerprint"]
            assert client.get("www.a.example").status == 404  # bound by SNI; no such route


def test_an_expired_certificate_is_loaded_with_a_warning_and_its_expiry_is_a_metric(
    pysozu, backends, pki
) -> None:
    """sozu loads expired certificates (its own command/assets config has one); so does pysozu,
    telling the client that added it and the logs, and exporting the soonest expiry."""
    port, prometheus = pysozu.free_port(), pysozu.free_port()
    served = pki.issue("a.example")
    expired = pki.issue(
        "expired.example",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC),
    )
    config = https_config(
        port,
        {
            "a": ("a.example", backends.start("app-a"), served),
            "old": ("expired.example", backends.start("app-old"), expired),
        },
    )
    proxy = pysozu.start(f'[prometheus]\naddress = "127.0.0.1:{prometheus}"\n\n{config}')
    with TlsClient(port, "expired.example", insecure_context()) as client:
        assert served_fingerprint(client.sock) == expired["fingerprint"]
        assert client.get("expired.example").status == 200
    assert "expired on 2021-01-01 00:00:00 UTC" in proxy.log()
    later = pki.issue(
        "later.example",
        not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        not_after=datetime.datetime(2022, 1, 1, tzinfo=datetime.UTC),
    )
    result = proxy.cli(
        "certificate", "add", "-a", f"127.0.0.1:{port}", "--certificate", later["certificate"],
        "--certificate-chain", ca_chain(pki), "--key", later["key"],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "warning: certificate for later.example expired on 2022-01-01" in result.stdout
    body = http.client.HTTPConnection("127.0.0.1", prometheus, timeout=10)
    body.request("GET", "/metrics")
    text = body.getresponse().read().decode()
    body.close()
    found = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    # Every worker serves the same certificates: the figures are not summed over the two.
    assert found["pysozu_tls_certificates_expired"] == 2
    earliest = datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC).timestamp()
    assert found["pysozu_tls_certificate_min_expiry_timestamp_seconds"] == earliest
