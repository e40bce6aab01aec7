"""ingress-nginx's cookie affinity attributes -> the cluster's `sticky_cookie`.

Read with `--nginx-annotations` under `nginx.ingress.kubernetes.io/`, and always under
`pysozu.io/` (same names; ours win), beside `affinity: cookie` / `pysozu.io/sticky-sessions`,
as ingress-nginx's sticky balancer sets its cookie:

- `session-cookie-path` -> `Path` (default `/`: the cluster is shared by every path that routes
  to the Service port, where ingress-nginx defaults to the matched location's path);
- `session-cookie-domain` -> `Domain`; `session-cookie-max-age` -> `Max-Age`;
  `session-cookie-expires` -> an `Expires` date that many seconds after the response;
- `session-cookie-samesite` (`None`, `Lax`, `Strict`) -> `SameSite`;
- `session-cookie-secure` -> `Secure` always (`"true"`) or never (`"false"`); unset, `Secure`
  on requests that came over TLS, as ingress-nginx does;
- `HttpOnly` always, as ingress-nginx.

What pysozu does differently is said by Event, never dropped in silence:
`session-cookie-conditional-samesite-none` (no per-browser exception: `SameSite=None` goes to
every browser), `session-cookie-change-on-failure: "false"` (a request whose sticky backend
fails moves to another backend and the cookie follows it, as with `"true"`), and
`affinity-mode: balanced` (sessions stay on their backend when the Service scales, as
`persistent`). Values that cannot be read are reported and left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ingress_operator.access_annotations import Lookup

from dataplane.command.messages import StickyCookie

AFFINITY_NAMES = frozenset(
    {
        "session-cookie-path",
        "session-cookie-domain",
        "session-cookie-max-age",
        "session-cookie-expires",
        "session-cookie-samesite",
        "session-cookie-secure",
        "session-cookie-conditional-samesite-none",
        "session-cookie-change-on-failure",
        "affinity-mode",
    }
)
_SAME_SITE = {"none": "None", "lax": "Lax", "strict": "Strict"}
_ATTRIBUTE = re.compile(r"^[!-:<-~]{1,256}$")  # printable, no space, no ';'
_MAX_SECONDS = 10 * 365 * 24 * 3600


@dataclass(slots=True)
class Affinity:
    """The cookie the annotations describe (None: none of them set), and what was wrong."""

    cookie: StickyCookie | None = None
    problems: list[str] = field(default_factory=list)


def _seconds(key: str, value: str, problems: list[str]) -> int | None:
    text = value.strip()
    if text.isdigit() and int(text) <= _MAX_SECONDS:
        return int(text)
    problems.append(f"annotation {key}: {value!r} is not a number of seconds in 0..{_MAX_SECONDS}")
    return None


def _bool(key: str, value: str, problems: list[str]) -> bool | None:
    if value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    problems.append(f"annotation {key}: {value!r} is not true or false")
    return None


def parse_affinity(find: Lookup, sticky: bool) -> Affinity:
    """The sticky cookie's attributes; `sticky`: whether the Ingress asks for sticky sessions
    (without them every attribute is reported as having no effect)."""
    result = Affinity()
    problems = result.problems
    found = {name: hit for name in sorted(AFFINITY_NAMES) if (hit := find(name)) is not None}
    if not found:
        return result
    if not sticky:
        for key, _ in found.values():
            problems.append(f"annotation {key}: has no effect without sticky sessions")
        return result
    attributes: dict[str, object] = {"http_only": True, "secure": "https"}
    for name, (key, value) in found.items():
        if name == "session-cookie-path":
            if value.startswith("/") and _ATTRIBUTE.match(value):
                attributes["path"] = value
            else:
                problems.append(f"annotation {key}: {value!r} is not a path (/..., no ';')")
        elif name == "session-cookie-domain":
            if _ATTRIBUTE.match(value):
                attributes["domain"] = value
            else:
                problems.append(f"annotation {key}: {value!r} is not a domain")
        elif name in ("session-cookie-max-age", "session-cookie-expires"):
            if (seconds := _seconds(key, value, problems)) is not None:
                attributes["max_age" if name.endswith("max-age") else "expires"] = seconds
        elif name == "session-cookie-samesite":
            if (same_site := _SAME_SITE.get(value.strip().lower())) is not None:
                attributes["same_site"] = same_site
            else:
                problems.append(f"annotation {key}: {value!r} is not None, Lax or Strict")
        elif name == "session-cookie-secure":
            if (secure := _bool(key, value, problems)) is not None:
                attributes["secure"] = "always" if secure else "never"
        elif name == "session-cookie-conditional-samesite-none":
            if _bool(key, value, problems):
                problems.append(
                    f"annotation {key}: not served: SameSite=None is sent to every browser "
                    "(no exception for the ones that reject it)"
                )
        elif name == "session-cookie-change-on-failure":
            if _bool(key, value, problems) is False:
                problems.append(
                    f'annotation {key}: served as "true": when the cookie\'s backend fails, '
                    "the request and the cookie move to another backend"
                )
        elif name == "affinity-mode":
            mode = value.strip()
            if mode == "balanced":
                problems.append(
                    f'annotation {key}: served as "persistent": sessions stay on their '
                    "backend when the Service scales"
                )
            elif mode not in ("persistent", "persistent-drainable"):
                problems.append(f"annotation {key}: {value!r} is not balanced or persistent")
    result.cookie = StickyCookie(**attributes)  # type: ignore[arg-type]
    return result


def default_cookie(sticky: bool) -> StickyCookie | None:
    """ingress-nginx's cookie when no attribute is set: HttpOnly, Secure over TLS, Path=/."""
    return StickyCookie(http_only=True, secure="https") if sticky else None
