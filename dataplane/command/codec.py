"""JSON encoding and validated decoding of protocol messages.

One place knows how custom types (socket addresses) cross the wire, so the channel, the state
file and the CLI's `--json` output all agree.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from dataplane.command.address import SocketAddress

T = TypeVar("T")


class DecodeError(ValueError):
    """A body that is not valid JSON or not a valid message; the text says where."""


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, SocketAddress):
        return obj.to_wire()
    if isinstance(obj, bytes):
        return list(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def _dec_hook(kind: type, obj: Any) -> Any:
    if kind is SocketAddress:
        try:
            return SocketAddress.from_wire(obj)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise msgspec.ValidationError(str(error)) from None
    raise NotImplementedError(f"cannot decode {kind!r}")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def encode(message: Any) -> bytes:
    """Encode a message (or any plain value holding messages) as compact JSON."""
    return _encoder.encode(message)


def to_builtins(message: Any) -> Any:
    """The message as plain dicts/lists, addresses in sozu's wire shape (for `--json`)."""
    return msgspec.to_builtins(message, enc_hook=_enc_hook)


def decode(data: bytes | str, kind: type[T]) -> T:
    """Decode and validate; raise DecodeError with the path of the first problem."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind, dec_hook=_dec_hook)
    try:
        result: T = decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise DecodeError(str(error)) from None
    return result


def convert(obj: Any, kind: type[T]) -> T:
    """Validate plain builtins (e.g. parsed from TOML or YAML) into a message."""
    try:
        return msgspec.convert(obj, kind, dec_hook=_dec_hook)
    except msgspec.ValidationError as error:
        raise DecodeError(str(error)) from None
