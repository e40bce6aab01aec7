"""Ingress annotations -> typed options, with every bad value reported, never raised.

Our keys live under `pysozu.io/`. With `--nginx-annotations`, the common ingress-nginx keys are
read too, where the dataplane can honour them; ours win when both are set. Every other key in
either namespace is reviewed by `annotation_review`: refused (the Ingress fails closed), or
reported as ignored, never silently.

Timeouts and the sticky cookie's name are per cluster (a pysozu extension of sozu's Cluster):
`connect-timeout` / `proxy-connect-timeout` -> `connect_timeout`, `backend-timeout` /
`proxy-read-timeout` / `proxy-send-timeout` (the larger of the two) -> `back_timeout`,
`session-cookie-name` -> `sticky_name`. A cookie name only means something with sticky sessions
(`pysozu.io/sticky-sessions: "true"` or nginx `affinity: cookie`); without them it is reported.

Basic auth, as the dataplane does it (sozu's): `pysozu.io/authorized-hashes` (entries
`user:hex(sha256(password))`) -> the cluster's `authorized_hashes` and `required_auth` on every
route of the Ingress; `pysozu.io/www-authenticate` -> the realm. ingress-nginx's basic auth
(htpasswd hashes: bcrypt, apr1, SHA, crypt) cannot be turned into these: it fails closed.

nginx `upstream-vhost` -> `rewrite_host` on the Ingress's forwarding routes: the Host header
the backends get (the dataplane sends the client's as X-Forwarded-Host, as ingress-nginx does).

`use-regex`, `rewrite-target`, `x-forwarded-prefix` and `server-alias`: rewrites.py (the regex
paths: regex_paths.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ingress_operator.access_annotations import ACCESS_NAMES, Access, lookup, parse_access
from ingress_operator.affinity_annotations import AFFINITY_NAMES, default_cookie, parse_affinity
from ingress_operator.annotation_review import NGINX, PREFIX, Notice, review
from ingress_operator.auth_request_annotations import AUTH_REQUEST_NAMES, AuthUrl, parse_auth_url
from ingress_operator.backend_tls_annotations import TLS_NAMES, BackendTlsAsk, parse_backend_tls
from ingress_operator.basic_auth_annotations import BASIC_AUTH_NAMES, BasicAuth, parse_basic_auth
from ingress_operator.canary import CANARY_NAMES, CanaryRule, parse_canary
from ingress_operator.client_auth_annotations import AUTH_TLS_NAMES, ClientTls, parse_client_tls
from ingress_operator.cors_annotations import CORS_NAMES, Cors, parse_cors
from ingress_operator.custom_errors_annotations import CUSTOM_ERRORS_NAMES, parse_custom_errors
from ingress_operator.passthrough import PASSTHROUGH_NAMES
from ingress_operator.redirects import Redirect, parse_app_root, parse_redirect
from ingress_operator.rewrites import NAMES as REWRITE_NAMES
from ingress_operator.rewrites import Rewrite, parse_rewrite
from ingress_operator.upstream_annotations import UPSTREAM_NAMES, parse_upstream

from dataplane.command.credential_formats import CredentialError, split_entry
from dataplane.command.messages import Cluster, LoadBalancingAlgorithms, LoadMetric, StickyCookie
from dataplane.command.state_rules import StateError, check_cookie_name

_ALGORITHMS = {
    "round_robin": LoadBalancingAlgorithms.ROUND_ROBIN,
    "random": LoadBalancingAlgorithms.RANDOM,
    "least_loaded": LoadBalancingAlgorithms.LEAST_LOADED,
    "power_of_two": LoadBalancingAlgorithms.POWER_OF_TWO,
    "hrw": LoadBalancingAlgorithms.HRW,
    "maglev": LoadBalancingAlgorithms.MAGLEV,
}
_METRICS = {
    "connections": LoadMetric.CONNECTIONS,
    "requests": LoadMetric.REQUESTS,
    "connection_time": LoadMetric.CONNECTION_TIME,
}
# Status codes whose answer a cluster may override (the dataplane's default answers).
ANSWER_CODES = ("400", "401", "404", "408", "413", "429", "502", "503", "504", "507")
_MAX_ANSWER_BYTES = 16 * 1024
_MAX_TIMEOUT_SECONDS = 3600
_MAX_WEIGHT = 10_000
# The names read here; every other key in either namespace goes through annotation_review.
NGINX_MAPPED = (
    ACCESS_NAMES
    | AFFINITY_NAMES
    | BASIC_AUTH_NAMES
    | UPSTREAM_NAMES
    | REWRITE_NAMES
    | frozenset(
        {
            "ssl-redirect",
            "force-ssl-redirect",
            "affinity",
            "session-cookie-name",
            "load-balance",
            "proxy-connect-timeout",
            "proxy-read-timeout",
            "proxy-send-timeout",
            "temporal-redirect",
            "temporal-redirect-code",
            "permanent-redirect",
            "permanent-redirect-code",
            "upstream-vhost",
            "app-root",
        }
    )
    | TLS_NAMES
)
PYSOZU_MAPPED = (
    ACCESS_NAMES
    | AFFINITY_NAMES
    | BASIC_AUTH_NAMES
    | UPSTREAM_NAMES
    | REWRITE_NAMES
    | frozenset(
        {
            "sticky-sessions",
            "load-balancing",
            "load-metric",
            "connect-timeout",
            "backend-timeout",
            "session-cookie-name",
            "ssl-redirect",
            "force-ssl-redirect",
            "backend-weights",
            "authorized-hashes",
            "www-authenticate",
            "http2",
        }
    )
    | TLS_NAMES
)
# Canary Ingresses (canary.py); ssl-passthrough (passthrough.py, read by render).
NGINX_MAPPED |= CANARY_NAMES | PASSTHROUGH_NAMES
PYSOZU_MAPPED |= CANARY_NAMES | PASSTHROUGH_NAMES
NGINX_MAPPED |= CORS_NAMES  # cors_annotations.py
PYSOZU_MAPPED |= CORS_NAMES
# Canary Ingresses (canary.py).
NGINX_MAPPED |= CANARY_NAMES
PYSOZU_MAPPED |= CANARY_NAMES
# External authorisation (auth_request_annotations.py).
NGINX_MAPPED |= AUTH_REQUEST_NAMES
PYSOZU_MAPPED |= AUTH_REQUEST_NAMES
# Client certificates (client_auth_annotations.py).
NGINX_MAPPED |= AUTH_TLS_NAMES
PYSOZU_MAPPED |= AUTH_TLS_NAMES
NGINX_MAPPED |= CUSTOM_ERRORS_NAMES  # custom_errors_annotations.py
PYSOZU_MAPPED |= CUSTOM_ERRORS_NAMES
_VHOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?$")


@dataclass(slots=True)
class Options:
    """What an Ingress's annotations ask for. None means "not set": use the default."""

    sticky_session: bool | None = None
    load_balancing: LoadBalancingAlgorithms | None = None
    load_metric: LoadMetric | None = None
    connect_timeout: int | None = None
    back_timeout: int | None = None
    sticky_name: str | None = None
    sticky_cookie: StickyCookie | None = None  # the sticky cookie's attributes
    authorized_hashes: list[str] | None = None  # set: every route asks for basic auth
    www_authenticate: str | None = None  # the basic auth realm
    basic_auth: BasicAuth | None = None  # auth-type basic: the Secret to read (render does)
    service_upstream: bool = False  # one backend: the Service's ClusterIP
    default_backend: str | None = None  # a Service serving while the own has no endpoint
    hash_key: str | None = None  # upstream-hash-by: MAGLEV keyed on these variables
    redirect: Redirect | None = None  # every route answers this redirect
    upstream_vhost: str | None = None  # the Host header sent to the backends
    http2: bool = False  # backends speak h2: backend-protocol GRPC/H2C/GRPCS, pysozu.io/http2
    backend_tls: BackendTlsAsk | None = None  # backend-protocol HTTPS/GRPCS, proxy-ssl-*
    app_root: str | None = None  # where `/` redirects (302)
    access: Access = field(default_factory=Access)  # source lists, rate limits, body size
    rewrite: Rewrite = field(
        default_factory=Rewrite
    )  # use-regex, rewrite-target, x-forwarded-prefix, aliases
    cors: Cors | None = None  # enable-cors and cors-* (cors_annotations.py)
    answers: dict[str, str] = field(default_factory=dict)
    ssl_redirect: bool | None = None
    force_ssl_redirect: bool = False
    weights: dict[str, int] = field(default_factory=dict)  # pod name or IP -> weight
    problems: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # restricting keys not enforced
    notices: list[Notice] = field(default_factory=list)
    canary: CanaryRule | None = None  # a canary Ingress (canary.py): it claims no route
    auth_url: AuthUrl | None = None  # auth-url: every route asks it first (render resolves it)
    client_tls: ClientTls | None = None  # auth-tls-*: its hosts' HTTPS frontends (render)
    custom_errors: tuple[int, ...] | None = None  # custom-http-errors (render resolves it)

    def cluster(self, cluster_id: str) -> Cluster:
        """The cluster these options describe (defaults where nothing was set)."""
        return Cluster(
            cluster_id=cluster_id,
            sticky_session=bool(self.sticky_session),
            load_balancing=self._algorithm(),
            load_metric=self.load_metric,
            answers=dict(self.answers),
            connect_timeout=self.connect_timeout,
            back_timeout=self.back_timeout,
            sticky_name=self.sticky_name,
            sticky_cookie=self.sticky_cookie if self.sticky_session else None,
            hash_key=self.hash_key,
            authorized_hashes=list(self.authorized_hashes or ()),
            www_authenticate=self.www_authenticate,
            http2=self.http2 or None,
        )

    def _algorithm(self) -> LoadBalancingAlgorithms:
        """upstream-hash-by needs a consistent hash: MAGLEV (nginx's `hash ... consistent`),
        or HRW when pysozu.io/load-balancing asks for it."""
        chosen = self.load_balancing or LoadBalancingAlgorithms.ROUND_ROBIN
        if self.hash_key is not None and chosen is not LoadBalancingAlgorithms.HRW:
            return LoadBalancingAlgorithms.MAGLEV
        return chosen

    @property
    def required_auth(self) -> bool:
        return self.authorized_hashes is not None


def _bool(key: str, value: str, problems: list[str]) -> bool | None:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    problems.append(f"annotation {key}: {value!r} is not true or false")
    return None


def _seconds(key: str, value: str, problems: list[str]) -> int | None:
    text = value.strip().removesuffix("s")
    if text.isdigit() and 0 < int(text) <= _MAX_TIMEOUT_SECONDS:
        return int(text)
    problems.append(f"annotation {key}: {value!r} is not a number of seconds in 1..3600")
    return None


def _weights(key: str, value: str, problems: list[str]) -> dict[str, int]:
    weights: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        target, sep, number = item.partition("=")
        if not sep or not target.strip() or not number.strip().isdigit():
            problems.append(f"annotation {key}: {item!r} is not <pod or IP>=<weight>")
            continue
        weights[target.strip()] = min(int(number), _MAX_WEIGHT)
    return weights


def _cookie_name(key: str, value: str, problems: list[str]) -> str | None:
    try:
        check_cookie_name("cookie name", value)  # the dataplane's own rule for sticky_name
    except StateError as error:
        problems.append(f"annotation {key}: {error}")
        return None
    return value


_REALM = re.compile(r"^[ !#-~]{1,128}$")


def _hashes(key: str, value: str, problems: list[str]) -> list[str]:
    """`user:hex(sha256(password))` or htpasswd entries, comma or space separated. A bad entry
    is reported (by user name) and left out; none left still asks for auth: every request 401."""
    hashes = []
    for entry in value.replace(",", " ").split():
        try:
            split_entry(entry)
        except CredentialError as error:
            problems.append(f"annotation {key}: {error}")
        else:
            hashes.append(entry)
    return hashes


def _check_cookie_name_applies(options: Options, annotations: Mapping[str, str]) -> None:
    """A cookie name without sticky sessions would be silently unused: say so, drop it."""
    if options.sticky_name is not None and not options.sticky_session:
        key = PREFIX + "session-cookie-name"
        if annotations.get(key) != options.sticky_name:
            key = NGINX + "session-cookie-name"
        options.problems.append(
            f"annotation {key}: has no effect without sticky sessions "
            f'({PREFIX}sticky-sessions: "true" or {NGINX}affinity: cookie)'
        )
        options.sticky_name = None


def parse_annotations(annotations: Mapping[str, str], nginx: bool) -> Options:
    options = Options()
    problems = options.problems
    options.refused, options.notices = review(
        annotations.items(), nginx, NGINX_MAPPED, PYSOZU_MAPPED
    )
    access = parse_access(lookup(annotations, nginx))
    options.access = access.access
    options.refused += access.refused
    options.notices += access.notices
    problems += access.problems
    upstream = parse_upstream(lookup(annotations, nginx))
    options.service_upstream = upstream.service_upstream
    options.default_backend = upstream.default_backend
    if upstream.hash_key is not None:
        options.hash_key = upstream.hash_key
    problems += upstream.problems
    basic = parse_basic_auth(lookup(annotations, nginx))
    options.basic_auth = basic.auth
    options.refused += basic.refused
    options.notices += basic.notices
    problems += basic.problems
    options.rewrite = parse_rewrite(lookup(annotations, nginx), problems)
    tls = parse_backend_tls(lookup(annotations, nginx))  # backend_tls_annotations.py
    options.http2, options.backend_tls = tls.http2, tls.tls
    options.refused += tls.refused
    options.notices += tls.notices
    problems += tls.problems
    cors = parse_cors(lookup(annotations, nginx))
    options.cors = cors.cors
    problems += cors.problems
    client_tls = parse_client_tls(lookup(annotations, nginx))  # client_auth_annotations.py
    options.client_tls = client_tls.ask
    options.refused += client_tls.refused
    options.notices += client_tls.notices
    problems += client_tls.problems
    errors = parse_custom_errors(lookup(annotations, nginx))
    options.custom_errors = errors.codes
    problems += errors.problems
    auth_url = parse_auth_url(lookup(annotations, nginx))
    options.auth_url = auth_url.auth
    options.refused += auth_url.refused
    options.notices += auth_url.notices
    if nginx:
        _parse_nginx(annotations, options)
    options.canary = parse_canary(annotations, nginx, problems)
    for key, value in annotations.items():
        if not key.startswith(PREFIX):
            continue
        name = key.removeprefix(PREFIX)
        if name == "sticky-sessions":
            options.sticky_session = _bool(key, value, problems)
        elif name == "load-balancing":
            algorithm = _ALGORITHMS.get(value.lower())
            if algorithm is None:
                problems.append(f"annotation {key}: {value!r} is not one of {sorted(_ALGORITHMS)}")
            options.load_balancing = algorithm
        elif name == "load-metric":
            metric = _METRICS.get(value.lower())
            if metric is None:
                problems.append(f"annotation {key}: {value!r} is not one of {sorted(_METRICS)}")
            options.load_metric = metric
        elif name in ("connect-timeout", "backend-timeout"):
            if (seconds := _seconds(key, value, problems)) is not None:
                field_name = "connect_timeout" if name == "connect-timeout" else "back_timeout"
                setattr(options, field_name, seconds)
        elif name == "session-cookie-name":
            if (cookie := _cookie_name(key, value, problems)) is not None:
                options.sticky_name = cookie
        elif name.startswith("answer-"):
            code = name.removeprefix("answer-")
            if code not in ANSWER_CODES:
                problems.append(f"annotation {key}: no answer for status {code} can be set")
            elif value.startswith("file://"):
                problems.append(f"annotation {key}: file:// answers are not allowed in Ingresses")
            elif len(value.encode()) > _MAX_ANSWER_BYTES:
                problems.append(f"annotation {key}: answers are limited to 16 KiB")
            else:
                options.answers[code] = value
        elif name == "ssl-redirect":
            options.ssl_redirect = _bool(key, value, problems)
        elif name == "force-ssl-redirect":
            options.force_ssl_redirect = bool(_bool(key, value, problems))
        elif name == "backend-weights":
            options.weights = _weights(key, value, problems)
        elif name == "authorized-hashes":
            options.authorized_hashes = _hashes(key, value, problems)
        elif name == "http2":
            options.http2 = bool(_bool(key, value, problems)) or options.http2
        elif name == "www-authenticate":
            if _REALM.match(value):
                options.www_authenticate = value
            else:
                problems.append(
                    f"annotation {key}: a realm is 1..128 printable characters, no '\"'"
                )
        elif (
            name in ACCESS_NAMES
            or name in BASIC_AUTH_NAMES
            or name in AFFINITY_NAMES
            or name in UPSTREAM_NAMES
            or name in REWRITE_NAMES
            or name in TLS_NAMES
            or name in CORS_NAMES
            or name in CUSTOM_ERRORS_NAMES
        ):
            continue  # read by their own modules
        elif name in CANARY_NAMES or name in PASSTHROUGH_NAMES or name in AUTH_REQUEST_NAMES:
            continue  # parse_canary, parse_auth_url read them; passthrough.py ssl-passthrough
        elif name in AUTH_TLS_NAMES:
            continue  # client_auth_annotations.py
        elif key not in options.refused:  # a refused one is reported as not enforced
            problems.append(f"annotation {key}: unknown pysozu.io annotation")
    _check_cookie_name_applies(options, annotations)
    affinity = parse_affinity(lookup(annotations, nginx), bool(options.sticky_session))
    problems += affinity.problems
    nginx_affinity = nginx and annotations.get(NGINX + "affinity") == "cookie"
    options.sticky_cookie = affinity.cookie or default_cookie(nginx_affinity)
    if options.www_authenticate is not None and not options.required_auth:
        options.problems.append(
            f"annotation {PREFIX}www-authenticate: has no effect without {PREFIX}authorized-hashes"
        )
        options.www_authenticate = None
    return options


def _parse_nginx(annotations: Mapping[str, str], options: Options) -> None:
    problems = options.problems

    def get(name: str) -> str | None:
        return annotations.get(NGINX + name)

    if (value := get("ssl-redirect")) is not None:
        options.ssl_redirect = _bool(NGINX + "ssl-redirect", value, problems)
    if (value := get("force-ssl-redirect")) is not None:
        options.force_ssl_redirect = bool(_bool(NGINX + "force-ssl-redirect", value, problems))
    options.redirect = parse_redirect(get, problems)
    if (value := get("app-root")) is not None:
        options.app_root = parse_app_root(value, problems)
    if (value := get("upstream-vhost")) is not None:
        if _VHOST.match(value):
            options.upstream_vhost = value
        else:
            problems.append(
                f"annotation {NGINX}upstream-vhost: {value!r} is not a host name "
                "(nginx variables are not supported); the request's Host is sent"
            )
    if (value := get("affinity")) is not None:
        if value == "cookie":
            options.sticky_session = True
        else:
            problems.append(f"annotation {NGINX}affinity: only 'cookie' is supported")
    if (value := get("session-cookie-name")) is not None:
        options.sticky_name = _cookie_name(NGINX + "session-cookie-name", value, problems)
    if value is None and options.sticky_session:
        options.sticky_name = "INGRESSCOOKIE"  # ingress-nginx's default name
    if (value := get("load-balance")) is not None:
        if value == "round_robin":
            options.load_balancing = LoadBalancingAlgorithms.ROUND_ROBIN
        elif value == "ewma":  # peak-EWMA of connect time, least loaded first
            options.load_balancing = LoadBalancingAlgorithms.LEAST_LOADED
            options.load_metric = LoadMetric.CONNECTION_TIME
        else:
            problems.append(f"annotation {NGINX}load-balance: {value!r} is not supported")
    for name, target in (
        ("proxy-connect-timeout", "connect_timeout"),
        ("proxy-read-timeout", "back_timeout"),
        ("proxy-send-timeout", "back_timeout"),
    ):
        if (value := get(name)) is None:
            continue
        if (seconds := _seconds(NGINX + name, value, problems)) is not None:
            current = getattr(options, target)
            setattr(options, target, seconds if current is None else max(current, seconds))
