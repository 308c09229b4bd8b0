"""The command registry: v2 argument checking as 6.0 does it, descriptors, registration."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hgwire.commands.registry import Arg, BytesResponse, Registry
from hgwire.errors import CommandError
from hgwire.wire import cbor


def _registry() -> Registry:
    reg = Registry()

    @reg.v2command(
        b"filedata",
        args={
            b"path": Arg("bytes", required=True),
            b"nodes": Arg("list", required=True),
            b"fields": Arg(
                "set",
                default=set,
                validvalues=frozenset({b"linknode", b"parents", b"revision"}),
            ),
            b"haveparents": Arg("bool", default=lambda: False),
        },
    )
    def filedata(ctx: Any, **args: Any) -> Iterator[Any]:
        yield args

    return reg


def test_unknown_arguments_are_named_sorted() -> None:
    cmd = _registry().v2[b"filedata"]
    with pytest.raises(CommandError) as exc:
        cmd.checkargs({b"path": b"a", b"nodes": [], b"zz": 1, b"aa": 2})
    # 6.0 sends the message already formatted, with no args list.
    assert exc.value.message == b"unsupported argument to command: aa, zz"
    assert exc.value.msgargs == []


def test_missing_required_arguments() -> None:
    cmd = _registry().v2[b"filedata"]
    with pytest.raises(CommandError) as exc:
        cmd.checkargs({})
    assert exc.value.message == b"missing required arguments: nodes, path"
    assert exc.value.msgargs == []
    assert str(exc.value) == "missing required arguments: nodes, path"


def test_defaults_and_set_conversion() -> None:
    cmd = _registry().v2[b"filedata"]
    args = cmd.checkargs({b"path": b"a", b"nodes": [], b"fields": [b"parents"]})
    assert args == {
        b"path": b"a",
        b"nodes": [],
        b"fields": {b"parents"},
        b"haveparents": False,
    }


def test_descriptor_matches_mercurial_shape() -> None:
    """The filedata descriptor encodes to the bytes 6.0 advertises (spec §7.3)."""
    desc = _registry().v2[b"filedata"].descriptor(ctx=None)  # type: ignore[arg-type]
    expected = {
        b"args": {
            b"fields": {
                b"default": set(),
                b"required": False,
                b"type": b"set",
                b"validvalues": {b"linknode", b"parents", b"revision"},
            },
            b"haveparents": {b"default": False, b"required": False, b"type": b"bool"},
            b"nodes": {b"required": True, b"type": b"list"},
            b"path": {b"required": True, b"type": b"bytes"},
        },
        b"permissions": [b"pull"],
    }
    assert desc == expected
    assert cbor.dumps(desc) == cbor.dumps(expected)


def test_double_registration_is_refused() -> None:
    reg = Registry()

    @reg.v1command(b"heads")
    def heads(ctx: Any, args: dict[bytes, bytes], payload: Any) -> BytesResponse:
        return BytesResponse(b"")

    with pytest.raises(ValueError, match="registered twice"):
        reg.v1command(b"heads")(heads)
