"""The command registry: names, typed arguments, permissions, implementations.

Transports look commands up here; they never hard-code command names. Argument checking
for v2 follows Mercurial 6.0's rules (spec §8.1) and capabilities descriptors are derived
from the same specs (spec §7.3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from hgwire.errors import CommandError

if TYPE_CHECKING:
    from hgwire.commands.context import CommandContext

Permission = Literal["pull", "push"]
ArgType = Literal["bytes", "int", "list", "dict", "set", "bool"]

#: Transports a v1 command can be served on (spec §0.1).
V1_TRANSPORTS = frozenset({"http-v1", "ssh-v1"})


@dataclass(frozen=True, slots=True)
class Arg:
    """A v2 argument: its type, whether it is required, its default and valid values."""

    type: ArgType
    required: bool = False
    default: Callable[[], Any] | None = None
    validvalues: frozenset[bytes] | None = None

    def descriptor(self) -> dict[bytes, Any]:
        """The capabilities form: ``{type, required, [default], [validvalues]}``."""
        desc: dict[bytes, Any] = {b"type": self.type.encode(), b"required": self.required}
        if not self.required:
            desc[b"default"] = self.default() if self.default is not None else None
        if self.validvalues is not None:
            desc[b"validvalues"] = set(self.validvalues)
        return desc


#: A v2 implementation: takes the context and the checked arguments, yields the objects
#: that follow the ``{status: ok}`` map. Raising CommandError sends a command error.
V2Handler = Callable[..., Iterator[Any]]
#: A v1 implementation: context, arguments by name, request payload (push data) if any.
V1Handler = Callable[["CommandContext", dict[bytes, bytes], BinaryIO | None], "V1Response"]


@dataclass(frozen=True, slots=True)
class V2Command:
    """A frame-protocol command."""

    name: bytes
    func: V2Handler
    args: Mapping[bytes, Arg]
    permission: Permission
    #: Extra descriptor keys (e.g. ``recommendedbatchsize``) from the server config.
    extracapabilities: Callable[[CommandContext], dict[bytes, Any]] | None = None
    #: Whether the command is offered at all for this context (e.g. stream clones off).
    available: Callable[[CommandContext], bool] | None = None

    def checkargs(self, given: Mapping[bytes, Any]) -> dict[bytes, Any]:
        """Validate ``given`` as 6.0 does (spec §8.1) and fill in defaults."""
        unknown = sorted(set(given) - set(self.args))
        if unknown:
            # 6.0 sends these two messages already formatted, without ``args``.
            raise CommandError(b"unsupported argument to command: " + b", ".join(unknown))
        missing = sorted(k for k, a in self.args.items() if a.required and k not in given)
        if missing:
            raise CommandError(b"missing required arguments: " + b", ".join(missing))
        out: dict[bytes, Any] = {}
        for name, spec in self.args.items():
            if name in given:
                value = given[name]
                if spec.type == "set" and isinstance(value, list):
                    value = set(value)
                out[name] = value
            else:
                out[name] = spec.default() if spec.default is not None else None
        return out

    def descriptor(self, ctx: CommandContext) -> dict[bytes, Any]:
        """This command's entry in the v2 capabilities ``commands`` map."""
        desc: dict[bytes, Any] = {
            b"args": {name: arg.descriptor() for name, arg in self.args.items()},
            b"permissions": [self.permission.encode()],
        }
        if self.extracapabilities is not None:
            desc.update(self.extracapabilities(ctx))
        return desc


@dataclass(frozen=True, slots=True)
class V1Command:
    """A legacy-protocol command.

    ``args`` is Mercurial's space-separated argument list (``b"key"``, ``b"nodes"``,
    ``b"*"`` for "all other arguments"), which decides how the ssh line protocol reads
    arguments and which HTTP parameters are passed.
    """

    name: bytes
    func: V1Handler
    args: bytes
    permission: Permission
    transports: frozenset[str] = V1_TRANSPORTS


# --- v1 responses (what a v1 handler returns; the transport renders them) ---------------


@dataclass(frozen=True, slots=True)
class BytesResponse:
    """A plain bytes value (``200 Script output follows`` over HTTP, a length line on ssh)."""

    data: bytes


@dataclass(slots=True)
class StreamResponse:
    """A streamed body; ``compressible`` bodies get the negotiated compression (spec §5.2)."""

    chunks: Iterator[bytes]
    compressible: bool = True
    prefer_uncompressed: bool = False


@dataclass(frozen=True, slots=True)
class PushResponse:
    """A bundle1-style push result: an integer plus captured server output."""

    result: int
    output: bytes = b""


@dataclass(frozen=True, slots=True)
class PushError:
    """A push refused before anything was applied (e.g. a push race)."""

    message: bytes


@dataclass(frozen=True, slots=True)
class OutOfBandError:
    """An error sent outside the normal reply (``application/hg-error``, ssh stderr)."""

    message: bytes


V1Response = BytesResponse | StreamResponse | PushResponse | PushError | OutOfBandError


@dataclass
class Registry:
    """Every command hgwire serves, by protocol."""

    v1: dict[bytes, V1Command] = field(default_factory=dict)
    v2: dict[bytes, V2Command] = field(default_factory=dict)

    def v1command(
        self,
        name: bytes,
        args: bytes = b"",
        permission: Permission = "pull",
        transports: frozenset[str] = V1_TRANSPORTS,
    ) -> Callable[[V1Handler], V1Handler]:
        """Decorator registering a v1 implementation."""

        def register(func: V1Handler) -> V1Handler:
            if name in self.v1:
                raise ValueError(f"v1 command {name!r} registered twice")
            self.v1[name] = V1Command(name, func, args, permission, transports)
            return func

        return register

    def v2command(
        self,
        name: bytes,
        args: Mapping[bytes, Arg] | None = None,
        permission: Permission = "pull",
        extracapabilities: Callable[[CommandContext], dict[bytes, Any]] | None = None,
        available: Callable[[CommandContext], bool] | None = None,
    ) -> Callable[[V2Handler], V2Handler]:
        """Decorator registering a v2 implementation."""

        def register(func: V2Handler) -> V2Handler:
            if name in self.v2:
                raise ValueError(f"v2 command {name!r} registered twice")
            self.v2[name] = V2Command(
                name, func, dict(args or {}), permission, extracapabilities, available
            )
            return func

        return register

    def v2commands(self, ctx: CommandContext) -> dict[bytes, V2Command]:
        """The v2 commands offered in ``ctx``."""
        return {
            name: cmd
            for name, cmd in self.v2.items()
            if cmd.available is None or cmd.available(ctx)
        }


#: The process-wide registry; command modules register into it when imported.
REGISTRY = Registry()
