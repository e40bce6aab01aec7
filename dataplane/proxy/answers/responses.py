"""Default answers: the complete HTTP/1.1 responses the proxy sends on its own (sozu 6.4).

Templates come from the listener's `answers` map (per status, e.g. "503"), overridden per
cluster by the cluster's `answers`; statuses nobody overrides use the built-ins. A template
value is, as in sozu, a complete raw response (`HTTP/1.1 503 ...`, head, blank line, body;
bare `\\n` line ends are accepted), or `file://path` to read one from disk when it is
configured. pysozu also accepts a body alone (any value not starting with `HTTP/`): it is
wrapped in the built-in head of that status.

Variables (`%REQUEST_ID`, `%CLUSTER_ID`, ...; the list per status is sozu's) are replaced in
the body anywhere, and in the head only where a header's whole value is the variable; such a
header is dropped when its value renders empty (e.g. no `WWW-Authenticate` without a realm).
Values are sanitised: control characters are removed from header values, and body values
are HTML-escaped, so a hostile path or message can neither inject headers nor markup.
`Content-Length` is always (re)computed. Templates are compiled once at configuration time
into literal byte chunks and variable slots, so rendering is a join.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from dataplane.command.messages import CustomHttpAnswers, HttpListenerConfig
from dataplane.proxy.answers.templates import (
    BODY_ONLY,
    CUSTOM_VARIABLES,
    HEADER_ONLY,
    REASONS,
    VARIABLES,
    default_answer,
    default_head,
    missing_template_answer,
)

MAX_TEMPLATE_BYTES = 1 << 20
_STATUS_LINE = re.compile(r"HTTP/1\.[01] ([1-9][0-9]{2})(?: [^\x00-\x08\x0a-\x1f\x7f]*)?")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = {c: None for c in (*range(0x09), *range(0x0A, 0x20), 0x7F)}

# A compiled head line: literal bytes, a (b"Name: ", VARIABLE) slot, or None for Content-Length.
_HeadItem = bytes | tuple[bytes, str] | None


class AnswersError(Exception):
    """A template that cannot be used; the message names the template and the reason."""


def _escape(text: str) -> str:
    """`html.escape(text)`, the same replacements in the same order, without the `html`
    package, whose entity tables cost a worker 0.5 MB."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#x27;")
    )


@dataclass(frozen=True, slots=True)
class _Template:
    status: int
    keep_alive: bool
    head: tuple[_HeadItem, ...]
    # Literal text at even indexes, variable names at odd ones: [text, VAR, text, ..., text].
    body: tuple[str, ...]

    def render(self, values: dict[str, str]) -> bytes:
        pieces = list(self.body)
        if len(pieces) > 1:
            escaped = {name: _escape(value) for name, value in values.items()}
            pieces[1::2] = [escaped.get(name, "") for name in pieces[1::2]]
        body = "".join(pieces).encode()
        out: list[bytes] = []
        for item in self.head:
            if isinstance(item, bytes):
                out.append(item)
            elif item is None:
                out.append(b"Content-Length: %d\r\n" % len(body))
            else:
                value = values.get(item[1], "").translate(_CONTROL).strip()
                if value:
                    out.append(item[0] + value.encode() + b"\r\n")
        out.append(b"\r\n")
        out.append(body)
        return b"".join(out)


def compile_template(name: str, text: str, sozu_id_header: str = "Sozu-Id") -> _Template:
    """Parse one answer template (AnswersError if it is not a usable HTTP/1.1 response)."""
    expected = int(name) if name.isdigit() else None
    if not text.startswith("HTTP/"):
        if expected is None or expected not in REASONS:
            raise AnswersError(f"answer {name!r}: a body-only template needs a known status name")
        text = default_head(expected, sozu_id_header) + text
    text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    head, blank, body = text.partition("\r\n\r\n")
    if not blank:
        raise AnswersError(f"answer {name!r}: the head does not end with a blank line")
    status_line, *lines = head.split("\r\n")
    found = _STATUS_LINE.fullmatch(status_line)
    if found is None:
        raise AnswersError(f"answer {name!r}: invalid status line {status_line!r}")
    status = int(found.group(1))
    if expected is not None and status != expected:
        raise AnswersError(f"answer {name!r}: the template's status is {status}")
    allowed = VARIABLES.get(name, CUSTOM_VARIABLES)
    items: list[_HeadItem] = [status_line.encode() + b"\r\n"]
    keep_alive = True
    for line in lines:
        key, colon, value = line.partition(":")
        value = value.strip(" \t")
        if not colon or not _TOKEN.fullmatch(key) or value != value.translate(_CONTROL):
            raise AnswersError(f"answer {name!r}: invalid header line {line!r}")
        lowered = key.lower()
        if lowered == "content-length":
            if None in items:
                raise AnswersError(f"answer {name!r}: Content-Length given twice")
            items.append(None)
        elif lowered == "transfer-encoding":
            raise AnswersError(f"answer {name!r}: Transfer-Encoding is not supported")
        elif value.startswith("%") and value[1:] in allowed:
            if value[1:] in BODY_ONLY:
                raise AnswersError(f"answer {name!r}: {value} is not allowed in a header")
            items.append((f"{key}: ".encode(), value[1:]))
        else:
            keep_alive = keep_alive and not (lowered == "connection" and value.lower() == "close")
            items.append(f"{line}\r\n".encode())
    if None not in items:
        items.append(None)
    return _Template(status, keep_alive, tuple(items), _compile_body(name, body, allowed))


def _compile_body(name: str, body: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    names = sorted(allowed, key=len, reverse=True)  # longest first: %PHASE vs %PHASE_X
    parts = re.split("%(" + "|".join(names) + ")", body)  # text, VAR, text, ..., text
    for variable in parts[1::2]:
        if variable in HEADER_ONLY:
            raise AnswersError(f"answer {name!r}: %{variable} is only allowed in a header")
    return tuple(parts)


def resolve_source(name: str, value: str) -> str:
    """An answer value as configured: inline text, or the content of `file://path`."""
    if not value.startswith("file://"):
        return value
    path = value.removeprefix("file://")
    try:
        with open(path, "rb") as source:
            data = source.read(MAX_TEMPLATE_BYTES + 1)
    except OSError as error:
        raise AnswersError(f"answer {name!r}: cannot read {path}: {error.strerror}") from None
    if len(data) > MAX_TEMPLATE_BYTES:
        raise AnswersError(f"answer {name!r}: {path} is larger than {MAX_TEMPLATE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise AnswersError(f"answer {name!r}: {path} is not UTF-8") from None


def listener_answer_map(config: HttpListenerConfig) -> dict[str, str]:
    """The listener's `answers` map, completed by the deprecated `http_answers` fields."""
    merged = dict(config.answers)
    legacy = config.http_answers or CustomHttpAnswers()
    for field in legacy.__struct_fields__:
        value = getattr(legacy, field)
        if value is not None:
            merged.setdefault(field.removeprefix("answer_"), value)
    return merged


@cache
def _builtin_templates(sozu_id_header: str) -> tuple[dict[str, _Template], _Template]:
    """The built-ins and the missing-template answer, compiled once per header name."""
    builtins = {
        str(status): compile_template(str(status), default_answer(status, sozu_id_header))
        for status in REASONS
    }
    return builtins, compile_template("", missing_template_answer(sozu_id_header))


class Answers:
    """The answers of one listener, with per-cluster overrides."""

    def __init__(
        self, listener_answers: dict[str, str] | None = None, sozu_id_header: str = "Sozu-Id"
    ) -> None:
        if not _TOKEN.fullmatch(sozu_id_header):
            raise AnswersError(f"invalid sozu_id_header {sozu_id_header!r}")
        self._sozu_id_header = sozu_id_header
        builtins, self._missing = _builtin_templates(sozu_id_header)
        self._listener = {**builtins, **self._compile_all(listener_answers or {})}
        self._clusters: dict[str, dict[str, _Template]] = {}

    def set_cluster_answers(self, cluster_id: str, answers: dict[str, str]) -> None:
        """Replace a cluster's overrides; all are compiled before any is installed."""
        compiled = self._compile_all(answers)
        if compiled:
            self._clusters[cluster_id] = compiled
        else:
            self._clusters.pop(cluster_id, None)

    def remove_cluster(self, cluster_id: str) -> None:
        self._clusters.pop(cluster_id, None)

    def render(
        self, status: int, cluster_id: str | None = None, variables: dict[str, str] | None = None
    ) -> bytes:
        """A complete response for `status`; variable names are given without the `%`."""
        return self.render_template(str(status), cluster_id, variables)

    def render_template(
        self, name: str, cluster_id: str | None = None, variables: dict[str, str] | None = None
    ) -> bytes:
        """Render a template by name (a frontend's redirect_template); 404 if it is missing."""
        template = self._find(name, cluster_id)
        values = variables or {}
        if template is None:
            template, values = self._missing, {**values, "TEMPLATE_NAME": name}
        return template.render(values)

    def closes_connection(self, status: int, cluster_id: str | None = None) -> bool:
        """Whether the answer says `Connection: close` (every built-in does)."""
        template = self._find(str(status), cluster_id)
        return template is None or not template.keep_alive

    def _find(self, name: str, cluster_id: str | None) -> _Template | None:
        if cluster_id is not None:
            overrides = self._clusters.get(cluster_id)
            if overrides is not None and name in overrides:
                return overrides[name]
        return self._listener.get(name)

    def _compile_all(self, answers: dict[str, str]) -> dict[str, _Template]:
        # Empty values mean "not set", as sozu's configuration loader treats them.
        return {
            name: compile_template(name, resolve_source(name, value), self._sozu_id_header)
            for name, value in answers.items()
            if value
        }
