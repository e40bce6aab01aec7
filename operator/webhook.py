"""The validating admission webhook's judgement: AdmissionReview (admission.k8s.io/v1) in, out.

An Ingress of our class is refused, with a message `kubectl apply` prints, when pysozu would
not serve it as written:

- an annotation pysozu would fail closed on (an access restriction it cannot enforce): the
  decision is the controller's own (`annotations.parse_annotations` -> `refused`, with the same
  message as the `AnnotationNotEnforced` Event);
- an annotation value pysozu cannot read, or an unknown `pysozu.io/` key;
- a malformed spec: a backend that is not a Service (resource backends), a Service backend
  without a name or with both or neither port fields, a host that is not a DNS name or a
  single-label wildcard, a path or pathType the Ingress API does not allow (same functions as
  the rendering: `model.parse_ingress`, `ingress_semantics.normalize_host` / `path_rules`).

- a host + path another Ingress of our class already serves with another backend, or one the
  Ingress claims twice with two backends (`claims.ClaimIndex`, built from the controller's
  indices: the rendering would give the route to one of them and report a `Conflict`);
- a regex path (`use-regex: "true"` or a `rewrite-target`, see rewrites.py) that does not
  compile as the REGEX path rule the rendering makes of it (Python `re`, as the dataplane);
- with `--webhook-require-tls-secrets`, a `tls[].secretName` not found or not usable.

Everything else is allowed, some with warnings (`kubectl` prints them): annotations ignored
(raw nginx snippets, unsupported nginx keys) and, by default, TLS Secrets not found yet
(cert-manager creates them after the Ingress). Ingresses of other classes, in namespaces this
controller does not watch, deletions, and other kinds are allowed untouched.

A body that is not an AdmissionReview is answered 400 (`AdmissionError`), never an exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ingress_operator.annotation_review import NOT_ENFORCED
from ingress_operator.annotations import parse_annotations
from ingress_operator.ingress_semantics import SemanticError, is_ours, normalize_host, path_rules
from ingress_operator.model import Ingress, IngressClass, ObjectKey, TlsSecret, parse_ingress
from ingress_operator.regex_paths import regex_error as regex_error  # re-exported
from ingress_operator.regex_paths import regex_rule
from ingress_operator.settings import RenderSettings

API_VERSION = "admission.k8s.io/v1"
MAX_BODY = 8 * 1024 * 1024  # an AdmissionReview carries the object and the old one
_MAX_MESSAGE = 3000  # characters of the refusal message (the first reasons, then a count)
_MAX_WARNING = 256  # the API server may truncate longer warnings
_MAX_WARNINGS = 16


class AdmissionError(ValueError):
    """The body is not an AdmissionReview we can answer (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class Context:
    """What the judgement reads from the controller: its settings and what it watches."""

    settings: RenderSettings = field(default_factory=RenderSettings)
    classes: Callable[[], Mapping[str, IngressClass]] = dict
    secrets: Callable[[], Mapping[ObjectKey, TlsSecret]] | None = None  # None: not known yet
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    # The routes the Ingress clashes on with others (claims.ClaimIndex.conflicts); None: unknown.
    conflicts: Callable[[Ingress], list[str]] | None = None
    require_tls_secrets: bool = False  # a missing or unusable TLS Secret is a refusal


@dataclass(slots=True)
class Verdict:
    allowed: bool = True
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        text = "; ".join(self.reasons)
        if len(text) > _MAX_MESSAGE:
            text = text[:_MAX_MESSAGE] + f"... ({len(self.reasons)} reasons in all)"
        return f"pysozu cannot serve this Ingress as written: {text}"


def _ours(ingress: Any, context: Context) -> bool:
    classes = context.classes()
    if is_ours(ingress, classes, context.settings):
        return True
    # Our class named before its IngressClass object is known (or while the watch catches up).
    name = ingress.class_name
    return name is not None and name not in classes and name == context.settings.ingress_class


def judge(body: Mapping[str, Any], context: Context) -> Verdict:
    """The verdict on one Ingress object (as the API server sends it)."""
    ingress = parse_ingress(body)
    verdict = Verdict()
    if context.namespaces and ingress.key.namespace not in context.namespaces:
        return verdict
    if not _ours(ingress, context):
        return verdict
    reasons = verdict.reasons
    reasons += ingress.problems
    options = parse_annotations(ingress.annotations, context.settings.nginx_annotations)
    for i, rule in enumerate(ingress.rules):
        try:
            normalize_host(rule.host)
        except SemanticError as error:
            reasons.append(f"rules[{i}].host: {error}")
        for j, entry in enumerate(rule.paths):
            try:
                if options.rewrite.regex(entry.path):  # rendered as a regex of its own
                    regex_rule(entry.path)
                else:
                    path_rules(entry.path_type, entry.path)
            except SemanticError as error:
                reasons.append(f"rules[{i}].http.paths[{j}]: {error}")
    for i, tls in enumerate(ingress.tls):
        for host in tls.hosts:
            try:
                normalize_host(host)
            except SemanticError as error:
                reasons.append(f"tls[{i}].hosts: {error}")
    for notice in options.notices:
        if notice.reason == NOT_ENFORCED:
            reasons.append(notice.message)
        elif notice.type == "Warning":
            verdict.warnings.append(notice.message)
    reasons += options.problems
    if context.conflicts is not None:
        reasons += context.conflicts(ingress)
    secrets = context.secrets() if context.secrets is not None else None
    if secrets is not None:
        _judge_secrets(ingress, secrets, context.require_tls_secrets, verdict)
    verdict.allowed = not reasons
    verdict.warnings = [w[:_MAX_WARNING] for w in verdict.warnings[:_MAX_WARNINGS]]
    return verdict


USE_REGEX = "nginx.ingress.kubernetes.io/use-regex"


def _judge_secrets(
    ingress: Ingress, secrets: Mapping[ObjectKey, TlsSecret], required: bool, verdict: Verdict
) -> None:
    """A missing Secret: a warning (cert-manager creates it after the Ingress), or with
    --webhook-require-tls-secrets a refusal; so is one that holds no usable key pair."""
    for i, tls in enumerate(ingress.tls):
        if not tls.secret_name:
            continue
        key = ObjectKey(ingress.key.namespace, tls.secret_name)
        secret = secrets.get(key)
        if secret is None and required:
            message = f"tls[{i}]: TLS Secret {key} not found (--webhook-require-tls-secrets)"
            verdict.reasons.append(message)
        elif secret is None:
            verdict.warnings.append(
                f"tls[{i}]: TLS Secret {key} not found (yet): its hosts are served without "
                "a certificate until it exists"
            )
        elif secret.problem is not None:
            target = verdict.reasons if required else verdict.warnings
            target.append(f"tls[{i}]: {secret.problem}")


def _request(review: Any) -> dict[str, Any]:
    if not isinstance(review, dict):
        raise AdmissionError("the body is not a JSON object")
    if review.get("kind") != "AdmissionReview" or review.get("apiVersion") != API_VERSION:
        raise AdmissionError(f"expected an AdmissionReview of {API_VERSION}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise AdmissionError("the AdmissionReview has no request")
    if not isinstance(request.get("uid"), str) or not request["uid"]:
        raise AdmissionError("the AdmissionReview request has no uid")
    return request


def _is_ingress(request: Mapping[str, Any]) -> bool:
    kind = request.get("kind")
    if not isinstance(kind, dict):
        return False
    return kind.get("group") == "networking.k8s.io" and kind.get("kind") == "Ingress"


def review(body: bytes, context: Context) -> bytes:
    """The AdmissionReview answering `body`; raises AdmissionError for a malformed one."""
    if len(body) > MAX_BODY:
        raise AdmissionError("the AdmissionReview is too large")
    try:
        request = _request(json.loads(body))
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError
        if isinstance(error, AdmissionError):
            raise
        raise AdmissionError(f"the body is not JSON: {error}") from None
    verdict = Verdict()
    if _is_ingress(request) and request.get("operation") in ("CREATE", "UPDATE"):
        obj = request.get("object")
        if not isinstance(obj, dict):
            raise AdmissionError("the AdmissionReview request has no object to judge")
        verdict = judge(obj, context)
    response: dict[str, Any] = {"uid": request["uid"], "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {"code": 400, "reason": "BadRequest", "message": verdict.message}
    if verdict.warnings:
        response["warnings"] = verdict.warnings
    answer = {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}
    return json.dumps(answer).encode()
