"""`pysozu certificate add|replace|list` against a real `pysozu start`: the chain is optional,
`--names` overrides the served names, `list` shows fingerprint, names and expiry from main's
state, `list --workers` asks each worker what its certificate store serves, `--json` parses.
Served certificates are checked with real TLS handshakes (trustme certificates)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from https_support import Pki, TlsClient, https_config, insecure_context, served_fingerprint

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def served(port: int, sni: str) -> str:
    with TlsClient(port, sni, insecure_context()) as client:
        return served_fingerprint(client.sock)


def ok(result: object) -> str:
    assert result.returncode == 0, result.stderr + result.stdout  # type: ignore[attr-defined]
    return str(result.stdout)  # type: ignore[attr-defined]


def test_add_list_replace_without_a_chain(pysozu, backends, pki) -> None:
    cert_a, cert_b = pki.issue("a.example"), pki.issue("b.example")
    cert_c, cert_d = pki.issue("c.example"), pki.issue("b.example")
    port = pysozu.free_port()
    address = f"127.0.0.1:{port}"
    instance = pysozu.start(
        https_config(port, {"a": ("a.example", backends.start("app-a"), cert_a)})
    )
    ok(
        instance.cli(
            "certificate", "add", "-a", address,
            "--certificate", cert_b["certificate"], "--key", cert_b["key"],
        )
    )  # fmt: skip
    assert served(port, "b.example") == cert_b["fingerprint"]
    ok(
        instance.cli(
            "certificate", "add", "-a", address, "--certificate", cert_c["certificate"],
            "--key", cert_c["key"], "--names", "other.example,more.example",
            "--tls-versions", "TLS_V1_2", "TLS_V1_3",
        )
    )  # fmt: skip
    assert served(port, "other.example") == cert_c["fingerprint"]
    assert served(port, "more.example") == cert_c["fingerprint"]

    listing = ok(instance.cli("certificate", "list"))
    lines = {line.split()[0]: line for line in listing.splitlines()[1:]}
    assert "b.example" in lines[cert_b["fingerprint"]]
    assert "other.example, more.example" in lines[cert_c["fingerprint"]]
    assert "UTC" in lines[cert_b["fingerprint"]]  # the expiry
    assert "c.example" not in lines[cert_c["fingerprint"]]
    as_json = json.loads(ok(instance.cli("certificate", "list", "--json")))
    assert as_json["status"] == "OK"
    dumped = json.dumps(as_json)
    assert cert_b["fingerprint"] in dumped and cert_c["fingerprint"] in dumped

    ok(
        instance.cli(
            "certificate", "replace", "-a", address, "-f", cert_b["fingerprint"],
            "--new-certificate", cert_d["certificate"], "--new-key", cert_d["key"],
        )
    )  # fmt: skip
    assert served(port, "b.example") == cert_d["fingerprint"]
    listing = ok(instance.cli("certificate", "list"))
    assert cert_d["fingerprint"] in listing and cert_b["fingerprint"] not in listing


def test_list_workers_asks_each_worker(pysozu, backends, pki) -> None:
    cert_a, cert_b = pki.issue("a.example"), pki.issue("b.example", "*.b.example")
    port = pysozu.free_port()
    address = f"127.0.0.1:{port}"
    instance = pysozu.start(
        https_config(port, {"a": ("a.example", backends.start("app-a"), cert_a)})
    )
    ok(
        instance.cli(
            "certificate", "add", "-a", address,
            "--certificate", cert_b["certificate"], "--key", cert_b["key"],
        )
    )  # fmt: skip
    listing = ok(instance.cli("certificate", "list", "--workers"))
    rows = [line.split() for line in listing.splitlines()[1:] if line.strip()]
    workers = {row[0] for row in rows if row[0] != "main"}
    assert len(workers) == 2, listing
    for worker in workers:
        served_names = {(row[2], row[3]) for row in rows if row[0] == worker}
        assert ("b.example", cert_b["fingerprint"]) in served_names
        assert ("*.b.example", cert_b["fingerprint"]) in served_names
        assert ("a.example", cert_a["fingerprint"]) in served_names
    assert "did not answer" not in listing

    filtered = ok(instance.cli("certificate", "list", "-w", "-d", "x.b.example"))
    assert cert_b["fingerprint"] in filtered and cert_a["fingerprint"] not in filtered

    as_json = json.loads(ok(instance.cli("certificate", "list", "-w", "--json")))
    assert as_json["status"] == "OK"
    dumped = json.dumps(as_json)
    assert as_json["message"] == ""  # every worker answered
    workers_map = as_json["content"]["content_type"]["WORKER_RESPONSES"]["map"]
    assert len(workers_map) == 3  # two workers and main
    assert all(
        "CERTIFICATES_BY_ADDRESS" in answer["content_type"] for answer in workers_map.values()
    )
    assert dumped.count(cert_b["fingerprint"]) >= 3  # each worker, and main


def test_bad_names_and_missing_files_are_refused(pysozu, backends, pki) -> None:
    cert_a, cert_b = pki.issue("a.example"), pki.issue("b.example")
    port = pysozu.free_port()
    address = f"127.0.0.1:{port}"
    instance = pysozu.start(
        https_config(port, {"a": ("a.example", backends.start("app-a"), cert_a)})
    )
    empty_names = instance.cli(
        "certificate", "add", "-a", address, "--certificate", cert_b["certificate"],
        "--key", cert_b["key"], "--names", ",",
    )  # fmt: skip
    assert empty_names.returncode != 0
    missing_chain = instance.cli(
        "certificate", "add", "-a", address, "--certificate", cert_b["certificate"],
        "--key", cert_b["key"], "--certificate-chain", "/nonexistent/chain.pem",
    )  # fmt: skip
    assert missing_chain.returncode != 0
    assert served(port, "b.example") != cert_b["fingerprint"]  # nothing was added
