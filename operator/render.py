"""The desired dataplane state, rendered from a snapshot of the cluster: a pure function.

`render(snapshot, settings)` returns the requests that build the whole desired state (in the
state file's order: listeners, clusters, HTTP frontends, certificates, HTTPS frontends,
backends), the Ingresses we serve (for status), and the problems to report as Events.

Conflicts are settled by age: Ingresses are visited oldest first and the first claim on a route
(host + path rule) or a TLS host wins; the later Ingress gets a problem. The one exception is
the Ingress API's tie rule: an Exact path beats a Prefix path of the same length.

Every route is served on the HTTP and the HTTPS listener, as ingress-nginx serves every server
on both ports. Hosts with a certificate (an Ingress `tls` entry with a usable Secret, see
tls_hosts.py) get theirs by SNI, others the listener's default certificate; plain HTTP to the
former is redirected to HTTPS (308) unless the Ingress says otherwise.

The access annotations (source lists, rate limits, body size: access_annotations.py) go on
every frontend of their Ingress, HTTP and HTTPS, redirecting ones included.

A canary Ingress (canary.py) renders no route of its own: its routes become the canary
alternative of the main Ingress's frontends of the same host and path, to its own cluster.

An Ingress with an access restriction pysozu cannot enforce (`annotation_review`) fails closed:
its routes are claimed as usual but go to a cluster of its own that never gets a backend, so
they answer 503 and never reach its Services.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ingress_operator import interned
from ingress_operator.access_annotations import Access
from ingress_operator.annotation_review import NOT_ENFORCED
from ingress_operator.annotations import Options, parse_annotations
from ingress_operator.auth_host_routes import DEFAULT_KEY, same_host_auths
from ingress_operator.auth_request_annotations import AuthUrl, auth_clusters, auth_url_of
from ingress_operator.backend_tls_annotations import cluster_backend_tls, refuse_unusable_secret
from ingress_operator.basic_auth_annotations import BasicAuth, BasicAuthResult, resolve_credentials
from ingress_operator.canary import CanaryRule, attach_canaries
from ingress_operator.client_auth_annotations import ClientTls, ClientTlsHosts
from ingress_operator.custom_errors_annotations import ErrorPlan, error_service, plan
from ingress_operator.ingress_semantics import (
    ANY_HOST,
    EXACT,
    SemanticError,
    cluster_id,
    is_ours,
    normalize_host,
    path_rules,
    refused_cluster_id,
)
from ingress_operator.interned import Encoded
from ingress_operator.model import (
    BackendRef,
    Endpoint,
    Ingress,
    ObjectKey,
    Service,
    ServicePort,
    Snapshot,
    der_fingerprint,
)
from ingress_operator.passthrough import PassthroughHosts
from ingress_operator.redirects import (
    TEMPLATE,
    Redirect,
    app_root_answer,
    app_root_cluster_id,
    app_root_template,
    redirect_cluster_id,
)
from ingress_operator.regex_paths import regex_rules, shown
from ingress_operator.rewrites import Hosts, Rewritten
from ingress_operator.settings import RenderSettings
from ingress_operator.tls_hosts import TlsHosts

from dataplane.command.address import SocketAddress
from dataplane.command.messages import (
    ActivateListener,
    AddCertificate,
    CertificateAndKey,
    Cluster,
    HttpListenerConfig,
    HttpsListenerConfig,
    ListenerType,
    PathRule,
    PathRuleKind,
    RedirectPolicy,
    Request,
)

HTTP, HTTPS = ListenerType.HTTP, ListenerType.HTTPS


@dataclass(frozen=True, slots=True)
class Problem:
    ingress: ObjectKey
    reason: str  # Event reason, CamelCase
    message: str
    type: str = "Warning"  # the Event's type: "Warning", or "Normal" for information


@dataclass(slots=True)
class Rendered:
    requests: list[Request]
    keys: list[bytes]  # each request's encoding: equal keys, equal requests
    served: frozenset[ObjectKey]
    refused: frozenset[ObjectKey]  # served, but failing closed: every route answers 503
    problems: list[Problem]
    cluster_owner: dict[str, ObjectKey]  # cluster id -> the Ingress it was rendered for
    certificate_owner: dict[str, ObjectKey]  # fingerprint -> Ingress

    def origin(self, request: Request) -> ObjectKey | None:
        """The Ingress a request was rendered for (for Events about failed requests)."""
        body = request.body
        if isinstance(body, str):  # remove_cluster
            return self.cluster_owner.get(body)
        cluster = getattr(body, "cluster_id", None)
        if isinstance(cluster, str):
            return self.cluster_owner.get(cluster)
        if request.verb == "add_certificate":
            return self.certificate_owner.get(der_fingerprint(body.certificate.certificate))
        fingerprint = getattr(body, "fingerprint", None) or getattr(body, "old_fingerprint", None)
        return self.certificate_owner.get(fingerprint) if fingerprint else None


@dataclass(slots=True)
class _Route:
    cluster: str
    owner: Ingress
    options: Options
    exact: bool  # rendered from an Exact path: wins a tie against a Prefix path
    app_root: str | None = None  # an nginx app-root redirect of `/`
    access: Access | None = None  # source lists, rate limits, body size (None: none)
    canary: tuple[str, CanaryRule, ObjectKey] | None = None  # cluster, rule, canary Ingress
    rewritten: Rewritten | None = None  # rewrite-target (rewrites.py)
    errors: ErrorPlan | None = None  # custom-http-errors (custom_errors_annotations.py)


@dataclass(slots=True)
class _Renderer:
    snapshot: Snapshot
    settings: RenderSettings
    problems: list[Problem] = field(default_factory=list)
    # (host, rule kind, rule value) -> route (PathRule itself is not hashable)
    routes: dict[tuple[str, PathRuleKind, str], _Route] = field(default_factory=dict)
    default_route: _Route | None = None
    clusters: dict[str, tuple[Ingress, BackendRef, Options]] = field(default_factory=dict)
    refusing: dict[str, Ingress] = field(default_factory=dict)  # backendless cluster -> owner
    redirecting: dict[str, tuple[Ingress, Redirect]] = field(default_factory=dict)
    app_roots: dict[str, Ingress] = field(default_factory=dict)  # app-root cluster -> owner
    canaries: list[tuple[Ingress, Options]] = field(default_factory=list)  # attached last
    passthrough: PassthroughHosts = field(default_factory=PassthroughHosts)  # ssl-passthrough
    options: dict[ObjectKey, Options] = field(default_factory=dict)  # parsed by scan()
    # custom-http-errors: the error cluster of each default-backend Service asked for pages
    error_services: dict[str, tuple[Ingress, BackendRef]] = field(default_factory=dict)
    hosts: Hosts = field(default_factory=Hosts)  # regex hosts and aliases (rewrites.py)
    tls: TlsHosts = field(init=False)
    client_tls: ClientTlsHosts = field(default_factory=ClientTlsHosts)  # auth-tls-*, per host

    def __post_init__(self) -> None:
        self.tls = TlsHosts(self.snapshot.secrets, self.problem)
        if (flag := self.settings.default_certificate) is not None:
            self.tls.default_name = "/".join(flag)
            default = self.snapshot.secrets.get(ObjectKey(*flag))
            self.tls.default = default if default is not None and not default.problem else None

    def problem(self, ingress: Ingress, reason: str, message: str) -> None:
        self.problems.append(Problem(ingress.key, reason, message))

    # -- per Ingress ------------------------------------------------------------------------

    def scan(self, ingress: Ingress) -> None:
        """Before any route: what this Ingress says about its hosts (regex paths, aliases)."""
        options = parse_annotations(ingress.annotations, self.settings.nginx_annotations)
        self.options[ingress.key] = options
        self.hosts.scan(ingress, options.rewrite)

    def add_ingress(self, ingress: Ingress) -> None:
        for message in ingress.problems:
            self.problem(ingress, "InvalidIngress", message)
        options = self.options.get(ingress.key)
        if options is None:
            options = parse_annotations(ingress.annotations, self.settings.nginx_annotations)
        refuse_unusable_secret(options, self.snapshot.secrets, ingress.key.namespace)
        if options.basic_auth is not None:
            self.resolve_basic_auth(ingress, options, options.basic_auth)
        if options.client_tls is not None and options.canary is None:
            hostless = [""] if any(not rule.host for rule in ingress.rules) else []
            self.client_tls.add(
                options,
                ingress.key,
                [*_rule_hosts(ingress), *hostless],
                self.snapshot.secrets,
                lambda reason, message: self.problem(ingress, reason, message),
            )
        for message in options.problems:
            self.problem(ingress, "InvalidAnnotation", message)
        for notice in options.notices:
            self.problems.append(Problem(ingress.key, notice.reason, notice.message, notice.type))
        if options.canary is not None:
            self.canaries.append((ingress, options))
            return
        access = None
        if options.refused:  # fail closed: every route of this Ingress goes nowhere
            refusing = refused_cluster_id(ingress.key)
            self.refusing[refusing] = ingress
        else:
            settings = self.settings
            access = options.access.resolved(settings.limit_req_status, settings.proxy_body_size)
        self.passthrough.add(
            ingress,
            options,
            self.settings.nginx_annotations,
            lambda ref: self.add_cluster(ingress, ref, options),
            lambda owner, kind, reason, text: self.problems.append(
                Problem(owner.key, reason, text, kind)
            ),
        )
        self.tls.add(ingress, _rule_hosts(ingress))
        errors = None if options.refused else self.error_cluster(ingress, options)
        for rule in ingress.rules:
            try:
                host = normalize_host(rule.host)
            except SemanticError as error:
                self.problem(ingress, "InvalidHost", str(error))
                continue
            for entry in rule.paths:
                rewrite = options.rewrite
                try:
                    if host in self.hosts.regex:
                        own = rewrite.regex(entry.path)
                        rules = regex_rules(entry.path_type, entry.path, own)
                    else:
                        rules = path_rules(entry.path_type, entry.path)
                except SemanticError as error:
                    self.problem(ingress, "InvalidPath", str(error))
                    continue
                if entry.backend is None:
                    continue
                cluster = self.route_cluster(ingress, entry.backend, options)
                exact = entry.path_type == EXACT
                for path in rules:
                    rewritten = rewrite.rewritten(entry.path, path)
                    route = _Route(
                        cluster, ingress, options, exact, None, access, rewritten=rewritten
                    )
                    if errors is not None:
                        route.errors = plan(
                            options.custom_errors or (), errors, ingress, entry.backend
                        )
                    self.claim_route(host, path, route)
        if options.app_root is not None and not options.refused:
            self.add_app_root(ingress, options, options.app_root, access)
        if ingress.default_backend is not None:
            cluster = self.route_cluster(ingress, ingress.default_backend, options)
            route = _Route(cluster, ingress, options, False, None, access)
            if errors is not None:
                route.errors = plan(
                    options.custom_errors or (), errors, ingress, ingress.default_backend
                )
            if self.default_route is None:
                self.default_route = route
            elif self.default_route.cluster != cluster:
                older = self.default_route.owner.key
                self.problem(ingress, "Conflict", f"defaultBackend: older Ingress {older} wins")

    def error_cluster(self, ingress: Ingress, options: Options) -> str | None:
        """custom-http-errors: the cluster of the default-backend Service serving the pages
        (reported, and None, when there is none: the routes serve as they are)."""
        found = error_service(
            ingress, options.custom_errors, options.default_backend, self.snapshot.services
        )
        if isinstance(found, str):
            self.problem(ingress, "InvalidAnnotation", found)
            return None
        if found is None:
            return None
        cid, ref = found
        self.error_services.setdefault(cid, (ingress, ref))
        return cid

    def resolve_basic_auth(self, ingress: Ingress, options: Options, auth: BasicAuth) -> None:
        """auth-type basic: the Secret's entries become the cluster's authorized_hashes."""
        result = BasicAuthResult()
        entries = resolve_credentials(
            auth, ingress.key.namespace, self.snapshot.auth_secrets, result
        )
        options.refused += result.refused
        options.notices += result.notices
        options.problems += result.problems
        if entries is not None:
            options.authorized_hashes = (options.authorized_hashes or []) + entries
            if options.www_authenticate is None:
                options.www_authenticate = auth.realm

    def add_app_root(
        self, ingress: Ingress, options: Options, root: str, access: Access | None
    ) -> None:
        """`/` on each of the Ingress's hosts redirects to `root` (before its own `/` route)."""
        cid = app_root_cluster_id(ingress.key)
        for rule in ingress.rules:
            try:
                host = normalize_host(rule.host)
            except SemanticError:
                continue  # reported with the rule
            if host == ANY_HOST or host.startswith("*."):
                message = f"annotation app-root: the rule for {host!r} has no fixed host; ignored"
                self.problem(ingress, "InvalidAnnotation", message)
                continue
            self.app_roots[cid] = ingress
            route = _Route(cid, ingress, options, exact=True, app_root=root, access=access)
            current = self.routes.get((host, PathRuleKind.EQUALS, "/"))
            if current is not None and current.owner is ingress:
                self.routes[(host, PathRuleKind.EQUALS, "/")] = route
            else:
                self.claim_route(host, PathRule(kind=PathRuleKind.EQUALS, value="/"), route)

    def add_aliases(self) -> None:
        """server-alias: each alias serves its host's routes (every Ingress's), with the
        host's certificate when it covers the alias."""
        pairs = self.hosts.aliases(lambda ingress, text: self.problem(ingress, "Conflict", text))
        for host, alias in pairs:
            for (name, kind, value), route in list(self.routes.items()):
                if name == host:
                    self.routes.setdefault((alias, kind, value), route)
            self.tls.alias(host, alias)

    def claim_route(self, host: str, path: PathRule, route: _Route) -> None:
        key = (host, path.kind, path.value)
        current = self.routes.get(key)
        if current is None or (route.exact and not current.exact):
            self.routes[key] = route
            return
        if current.cluster != route.cluster and not (current.exact and not route.exact):
            where = f"{host}{shown(path)}"
            message = f"route {where} is already served by older Ingress {current.owner.key}"
            self.problem(route.owner, "Conflict", message)

    def route_cluster(self, ingress: Ingress, ref: BackendRef, options: Options) -> str:
        """The cluster a route of this Ingress goes to: its backend's, or when the Ingress
        fails closed, its cluster without backends (the dataplane answers 503)."""
        if options.refused:
            return refused_cluster_id(ingress.key)
        if options.redirect is not None:
            cid = redirect_cluster_id(ingress.key)
            self.redirecting[cid] = (ingress, options.redirect)
            return cid
        return self.add_cluster(ingress, ref, options)

    def add_cluster(self, ingress: Ingress, ref: BackendRef, options: Options) -> str:
        cid = cluster_id(ingress.key.namespace, ref.service, ref.port_label)
        current = self.clusters.get(cid)
        if current is None:
            self.clusters[cid] = (ingress, ref, options)
        elif current[0] is not ingress and _cluster_shape(current[2], cid) != _cluster_shape(
            options, cid
        ):
            message = f"cluster {cid}: the annotations of older Ingress {current[0].key} apply"
            self.problem(ingress, "Conflict", message)
        return cid

    def secured(self, host: str) -> bool:
        return self.tls.secured(host)

    def redirects(self, host: str, route: _Route) -> bool:
        """HTTP -> HTTPS (308) for hosts with a certificate, unless the Ingress opts out."""
        if route.options.force_ssl_redirect:
            return True
        return self.secured(host) and route.options.ssl_redirect is not False

    # -- output -----------------------------------------------------------------------------

    def app_root_cluster(self, cid: str) -> Cluster:
        answers = {}
        for (host, _, _), route in self.routes.items():
            if route.cluster == cid and route.app_root is not None:
                for scheme in ("http", "https"):
                    answer = app_root_answer(scheme, host, route.app_root)
                    answers[app_root_template(scheme, host)] = answer
        return Cluster(cluster_id=cid, answers=answers)

    def backends(
        self, cid: str, owner: Ingress, ref: BackendRef, namespace: str | None = None
    ) -> Iterable[tuple[Request, bytes]]:
        namespace = namespace or owner.key.namespace
        service = self.snapshot.services.get(ObjectKey(namespace, ref.service))
        if service is None:
            self.problem(owner, "ServiceNotFound", f"service {namespace}/{ref.service} not found")
            return
        if service.type == "ExternalName":
            self.problem(
                owner, "Unsupported", f"service {service.key}: ExternalName is unsupported"
            )
            return
        port = next(
            (p for p in service.ports if p.port == ref.port_number or p.name == ref.port_name),
            None,
        )
        if port is None:
            self.problem(
                owner, "PortNotFound", f"service {service.key} has no port {ref.port_label}"
            )
            return
        options = self.clusters[cid][2] if cid in self.clusters else None  # None: auth-url's
        if options is not None and options.service_upstream:
            if service.cluster_ip and service.cluster_ip != "None":
                entry = interned.backend(cid, service.cluster_ip, port.port, None, False)
                if entry is not None:
                    yield entry
                return
            message = f"annotation service-upstream: service {service.key} has no ClusterIP"
            self.problem(owner, "InvalidAnnotation", message + "; its endpoints are used")
        weights = options.weights if options is not None else {}
        chosen = self.endpoints(service, port)
        fallback_name = options.default_backend if options is not None else None
        if fallback_name and not any(not e.terminating for e in chosen.values()):
            fallback = self.default_backend_endpoints(owner, fallback_name)
            if fallback is not None:
                chosen = fallback
        for (address, target), endpoint in chosen.items():
            weight = weights.get(endpoint.pod or "", weights.get(address))
            entry = interned.backend(cid, address, target, weight, endpoint.terminating)
            if entry is not None:
                yield entry

    def default_backend_endpoints(
        self, owner: Ingress, name: str
    ) -> dict[tuple[str, int], Endpoint] | None:
        """The `default-backend` annotation's Service (its first port), while the route's own
        Service has no endpoint in rotation."""
        service = self.snapshot.services.get(ObjectKey(owner.key.namespace, name))
        if service is None or not service.ports:
            message = f"annotation default-backend: service {owner.key.namespace}/{name} not found"
            self.problem(owner, "InvalidAnnotation", message)
            return None
        return self.endpoints(service, service.ports[0])

    def endpoints(self, service: Service, port: ServicePort) -> dict[tuple[str, int], Endpoint]:
        """(address, target port) -> endpoint for a Service port, from its EndpointSlices."""
        chosen: dict[tuple[str, int], Endpoint] = {}
        for endpoint_slice in self.snapshot.slices.get(service.key, ()):
            target = next((p.port for p in endpoint_slice.ports if p.name == port.name), None)
            if target is None:
                continue
            for endpoint in endpoint_slice.ready:
                known = chosen.get((endpoint.address, target))
                if known is None or (known.terminating and not endpoint.terminating):
                    chosen[endpoint.address, target] = endpoint
        # A terminating but serving endpoint is a backup backend: no new requests while another
        # is in rotation, requests under way finish (it stays in the dataplane); when every
        # endpoint is terminating, they serve rather than a 503, as kube-proxy does (KEP-1669).
        return chosen

    def requests(self) -> list[Encoded]:
        http, https = self.settings.http_address, self.settings.https_address
        out = [
            interned.encoded(Request.of(add_http_listener=HttpListenerConfig(address=http))),
            interned.encoded(
                Request.of(activate_listener=ActivateListener(address=http, proxy=HTTP))
            ),
            interned.encoded(Request.of(add_https_listener=HttpsListenerConfig(address=https))),
            interned.encoded(
                Request.of(activate_listener=ActivateListener(address=https, proxy=HTTPS))
            ),
        ]
        used = {route.cluster for route in self.routes.values()}
        used.update(route.canary[0] for route in self.routes.values() if route.canary)
        if self.default_route is not None:
            used.add(self.default_route.cluster)
        used |= self.passthrough.clusters()
        auth_services = auth_clusters([*self.routes.values(), self.default_route])
        used.update(auth_services)
        # `$host`-relative auth-url: the route serving its path on the same host answers
        same_host, failures = same_host_auths(self.routes, self.default_route, self.redirects)
        for owner_key, message in failures:
            self.problems.append(Problem(owner_key, NOT_ENFORCED, message))
        used.update(cid for cid, _ in same_host.values())
        used.update(self.error_services)
        cluster_ids = sorted(used)
        for cid in cluster_ids:
            if cid in self.redirecting:
                cluster = self.redirecting[cid][1].cluster(cid)
            elif cid in self.app_roots:
                cluster = self.app_root_cluster(cid)
            elif cid in self.clusters:
                owner, ref, options = self.clusters[cid]
                cluster = options.cluster(cid)
                cluster.backend_tls = cluster_backend_tls(
                    options, self.snapshot.secrets, owner, ref
                )
            else:
                cluster = Options().cluster(cid)
            out.append(interned.encoded(Request.of(add_cluster=cluster)))
        fronts = [
            (host, kind, value, route) for (host, kind, value), route in sorted(self.routes.items())
        ]
        default = self.default_route
        for host, kind, value, route in fronts:
            out.append(
                _front_of(
                    "add_http_frontend",
                    http,
                    host,
                    kind,
                    value,
                    route,
                    self.redirects(host, route),
                    same_auth=same_host.get((host, kind, value)),
                )
            )
        if default is not None:
            out.append(
                _front_of(
                    "add_http_frontend",
                    http,
                    ANY_HOST,
                    None,
                    "",
                    default,
                    default.options.force_ssl_redirect,
                    same_auth=same_host.get(DEFAULT_KEY),
                )
            )
        self.tls.finish()
        for fingerprint in sorted(self.tls.certificates):
            _, secret, names = self.tls.certificates[fingerprint]
            certificate = CertificateAndKey(
                certificate=secret.certificate,
                certificate_chain=list(secret.chain),
                key=secret.private_key,
                names=sorted(names),
            )
            add = AddCertificate(address=https, certificate=certificate)
            out.append(interned.encoded(Request.of(add_certificate=add)))
        # HTTPS serves every route, as ingress-nginx does: a host without a certificate of
        # its own (a hostless rule, the defaultBackend) gets the listener's default one.
        for host, kind, value, route in fronts:
            client_tls = self.client_tls.get(host)  # nginx's server-wide ssl_verify_client
            out.append(
                _front_of(
                    "add_https_frontend",
                    https,
                    host,
                    kind,
                    value,
                    route,
                    False,
                    client_tls,
                    same_host.get((host, kind, value)),
                )
            )
        if default is not None:
            default_same = same_host.get(DEFAULT_KEY)
            out.append(
                _front_of(
                    "add_https_frontend",
                    https,
                    ANY_HOST,
                    None,
                    "",
                    default,
                    False,
                    None,
                    default_same,
                )
            )
        out.extend(self.passthrough.frontends(https))  # routed by SNI before any handshake
        for cid in cluster_ids:
            if cid in self.clusters:  # a refusing cluster never gets a backend
                owner, ref, _ = self.clusters[cid]
                out.extend(self.backends(cid, owner, ref))
            elif cid in auth_services:  # an auth-url Service: a cluster of its own
                owner, namespace, ref = auth_services[cid]
                out.extend(self.backends(cid, owner, ref, namespace))
            elif cid in self.error_services:  # a default-backend serving error pages
                owner, ref = self.error_services[cid]
                out.extend(self.backends(cid, owner, ref))
        return out


def _cluster_shape(options: Options, cid: str) -> tuple[object, ...]:
    """What two Ingresses sharing a cluster must agree on: its settings and its backends."""
    return (
        options.cluster(cid),
        options.service_upstream,
        options.default_backend,
        options.backend_tls,
    )


def _front_of(
    verb: str,
    address: SocketAddress,
    host: str,
    kind: PathRuleKind | None,
    value: str,
    route: _Route,
    redirect: bool,
    client_tls: ClientTls | None = None,
    same_auth: tuple[str, AuthUrl] | None = None,  # a resolved `$host` auth-url
) -> Encoded:
    # nginx answers app-root, then an Ingress's own redirect, before any HTTP-to-HTTPS one;
    # failing closed comes before all (the route goes to the refusing cluster).
    custom = None if route.options.refused else route.options.redirect
    answer = (custom.policy, TEMPLATE) if custom is not None else None
    if route.app_root is not None:
        scheme = "https" if verb == "add_https_frontend" else "http"
        answer = (RedirectPolicy.FOUND, app_root_template(scheme, host))
    redirect = redirect and answer is None
    # A Host rewrite only on routes that forward (a redirect's Location keeps the client's host).
    forwards = not (route.options.refused or answer or redirect)
    return interned.frontend(
        verb,
        address,
        host,
        kind,
        value,
        route.cluster,
        route.owner.key,
        redirect,
        route.options.required_auth and answer is None,
        answer,
        route.options.upstream_vhost if forwards else None,
        route.access,
        route.canary[:2] if route.canary and forwards else None,
        route.rewritten if forwards else None,
        None if route.options.refused or route.app_root is not None else route.options.cors,
        (same_auth or auth_url_of(route.options, route.owner.key.namespace)) if forwards else None,
        client_tls,
        route.errors if forwards else None,
    )


def _rule_hosts(ingress: Ingress) -> list[str]:
    """The Ingress's named rule hosts, normalised (bad ones are reported with their rule)."""
    hosts = []
    for rule in ingress.rules:
        if rule.host:
            try:
                hosts.append(normalize_host(rule.host))
            except SemanticError:
                continue
    return hosts


def render(snapshot: Snapshot, settings: RenderSettings) -> Rendered:
    renderer = _Renderer(snapshot, settings)
    ours = [i for i in snapshot.ingresses.values() if is_ours(i, snapshot.classes, settings)]
    ours.sort(key=lambda ingress: ingress.age_key)
    for ingress in ours:
        renderer.scan(ingress)
    for ingress in ours:
        renderer.add_ingress(ingress)
    attach_canaries(renderer, renderer.canaries)
    renderer.add_aliases()
    encoded = renderer.requests()
    cluster_owner = {cid: owner.key for cid, (owner, _, _) in renderer.clusters.items()}
    cluster_owner.update((cid, owner.key) for cid, owner in renderer.refusing.items())
    cluster_owner.update((cid, owner.key) for cid, (owner, _) in renderer.redirecting.items())
    cluster_owner.update((cid, owner.key) for cid, owner in renderer.app_roots.items())
    return Rendered(
        requests=[request for request, _ in encoded],
        keys=[key for _, key in encoded],
        served=frozenset(ingress.key for ingress in ours),
        refused=frozenset(owner.key for owner in renderer.refusing.values()),
        problems=renderer.problems,
        cluster_owner=cluster_owner,
        certificate_owner={
            fp: owner.key for fp, (owner, _, _) in renderer.tls.certificates.items()
        },
    )
