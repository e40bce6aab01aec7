"""ingress-nginx's `temporal-redirect` / `permanent-redirect` (+ `-code`) on the dataplane.

ingress-nginx answers every request of such an Ingress with `return <code> <url>;`: the URL
verbatim as `Location` (no path or query appended), before any HTTP-to-HTTPS redirect.
`temporal-redirect` wins over `permanent-redirect`; a code outside 300..308 falls back to
the default (302, 301). The URL must be http(s).

The dataplane renders a redirect's answer from a named template: each such Ingress gets a
cluster of its own, `<namespace>/<ingress>:-redirect`, with no backend and one answer template
holding the fixed `Location`, and its routes point at it with `redirect_template`. nginx sends
a URL as `Location` only for 301, 302, 303, 307 and 308 (other codes send it as the body): those
five are mapped; other codes are reported and the default is used.

`app-root`: ingress-nginx answers a request for exactly `/` on the Ingress's hosts with
`302 $scheme://$http_host<app-root>` (no query), before anything else. Here: an EQUALS `/`
route per rule host, to the cluster `<namespace>/<ingress>:-app-root` holding one answer per
scheme and host with that fixed Location (a client that names a port in Host gets none back).
Hostless and wildcard rules have no fixed host: reported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ingress_operator.annotation_review import NGINX
from ingress_operator.model import ObjectKey

from dataplane.command.messages import Cluster, RedirectPolicy

TEMPLATE = "ingress-redirect"
_URL = re.compile(r"^https?://[^\s\x00-\x1f\x7f]+$", re.IGNORECASE)
_PATH = re.compile(r"^/[^\s\x00-\x1f\x7f]*$")
_REASONS = {
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
}
# What the dataplane counts and logs the answer as (the bytes say the exact code).
_POLICY = {301: RedirectPolicy.PERMANENT, 308: RedirectPolicy.PERMANENT_REDIRECT}


@dataclass(frozen=True, slots=True)
class Redirect:
    code: int
    url: str

    @property
    def policy(self) -> RedirectPolicy:
        return _POLICY.get(self.code, RedirectPolicy.FOUND)

    def cluster(self, cluster_id: str) -> Cluster:
        answer = (
            f"HTTP/1.1 {self.code} {_REASONS[self.code]}\r\n"
            f"Location: {self.url}\r\nContent-Length: 0\r\n\r\n"
        )
        return Cluster(cluster_id=cluster_id, answers={TEMPLATE: answer})


def app_root_cluster_id(ingress: ObjectKey) -> str:
    return f"{ingress.namespace}/{ingress.name}:-app-root"


def app_root_template(scheme: str, host: str) -> str:
    """The answer's name in the app-root cluster: one per scheme and host."""
    return f"app-root {scheme}://{host}"


def app_root_answer(scheme: str, host: str, root: str) -> str:
    """ingress-nginx: `if ($uri = /) { return 302 $scheme://$http_host<app-root>; }`."""
    return f"HTTP/1.1 302 Found\r\nLocation: {scheme}://{host}{root}\r\nContent-Length: 0\r\n\r\n"


def parse_app_root(value: str, problems: list[str]) -> str | None:
    if "$" in value:
        problems.append(f"annotation {NGINX}app-root: nginx variables are not supported")
    elif not _PATH.match(value):
        problems.append(f"annotation {NGINX}app-root: {value!r} is not a path starting with /")
    else:
        return value
    return None


def redirect_cluster_id(ingress: ObjectKey) -> str:
    """A Service port name never starts with "-": no Service route shares this cluster."""
    return f"{ingress.namespace}/{ingress.name}:-redirect"


def parse_redirect(get: Callable[[str], str | None], problems: list[str]) -> Redirect | None:
    """The redirect the nginx annotations ask for (problems for what cannot be honoured)."""
    found: Redirect | None = None
    for name, default in (("temporal-redirect", 302), ("permanent-redirect", 301)):
        url = get(name)
        code = _code(name + "-code", get(name + "-code"), default, problems)
        if not url:
            if get(name + "-code") is not None:
                problems.append(f"annotation {NGINX}{name}-code: has no effect without {name}")
        elif found is not None:
            problems.append(f"annotation {NGINX}{name}: temporal-redirect wins, as in nginx")
        elif "$" in url:
            problems.append(
                f"annotation {NGINX}{name}: nginx variables are not supported; not redirected"
            )
        elif not _URL.match(url):
            problems.append(f"annotation {NGINX}{name}: {url!r} is not an http(s) URL")
        else:
            found = Redirect(code, url)
    return found


def _code(key: str, value: str | None, default: int, problems: list[str]) -> int:
    if value is None:
        return default
    text = value.strip()
    if not text.isdigit():
        problems.append(f"annotation {NGINX}{key}: {value!r} is not a number")
        return default
    code = int(text)
    if not 300 <= code <= 308:
        return default  # as ingress-nginx: out of range means the default
    if code not in _REASONS:
        problems.append(
            f"annotation {NGINX}{key}: pysozu redirects with 301, 302, 303, 307 or 308 only "
            f"(nginx sends the URL as the body for {code}); {default} is used"
        )
        return default
    return code
