"""Host Mercurial 6.0's frame reactors for interop tests; runs in hg 6.0's own virtualenv.

Run as ``<hg-6.0 venv>/bin/python hg60_peer.py``. It reads one JSON object per line on
stdin and answers each with one JSON line on stdout. Bytes travel as lowercase hex;
CBOR values use the typed JSON form of ``/work/shared/vectors/README.md`` (a string is a
byte string in hex, ``{"$map": [[k, v], ...]}``, ``{"$set": [...]}``, ``{"$chunk": ...}``).

Requests (``op``) and what they answer besides ``"ok": true``:

* ``server_new`` (``deferoutput``): a fresh ``serverreactor``.
* ``server_feed`` (``data``): bytes from the client, cut into frames here; ``actions``
  lists the reactor's answer per frame, ``frames`` any frames it asked to send.
* ``server_respond`` (``requestid``, ``objects``): hand a command's output objects to the
  reactor (``{"$raise": msg}`` raises while iterating, ``{"$indefinite": [hex, ...]}`` is
  an indefinite-length byte string response); ``frames`` as above.
* ``server_commanderror`` (``requestid``, ``message``, ``args``), ``server_servererror``
  (``requestid``, ``message``), ``server_eof``: ``frames`` as above.
* ``client_new`` (``encoders``, ``hasmultiplesend``, ``buffersends``): a fresh
  ``clientreactor``.
* ``client_call`` (``command``, ``args``, ``data``): ``requestid`` and ``frames``.
* ``client_flush``: ``frames``.
* ``client_feed`` (``data``): bytes from the server; ``actions`` per frame.
* ``cbor_encode`` (``values``): ``encoded``, Mercurial's encoding of each value.
* ``cbor_decodeall`` (``inputs``): per input, ``values`` from ``cborutil.decodeall`` or
  the ``error`` type and ``message``.
* ``client_results``: ``results`` maps request ids to ``objects`` (every CBOR value of
  the response, status map first), ``eos``, ``error``, ``decode_error`` (hg's CBOR
  decoder rejected the data) and ``pending`` (bytes that did not complete a value).

A Mercurial exception answers ``{"ok": false, "raises": {"type", "message"}}``.
"""

from __future__ import annotations

import io
import json
import sys
import traceback
from typing import Any

from mercurial import error, wireprotoframing, wireprototypes  # type: ignore[import-not-found]
from mercurial.utils import cborutil  # type: ignore[import-not-found]


def to_py(value: Any) -> Any:
    """Typed JSON to a Python value as Mercurial's CBOR code uses them."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return bytes.fromhex(value)
    if isinstance(value, list):
        return [to_py(v) for v in value]
    if isinstance(value, dict):
        if "$map" in value:
            return {to_py(k): to_py(v) for k, v in value["$map"]}
        if "$set" in value:
            return {to_py(v) for v in value["$set"]}
        if "$chunk" in value:
            return cborutil.bytestringchunk(
                bytes.fromhex(value["$chunk"]), first=value["first"], last=value["last"]
            )
    raise ValueError(f"cannot convert {value!r}")


def to_json(value: Any) -> Any:
    """A Python value decoded by Mercurial to typed JSON."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, cborutil.bytestringchunk):
        return {"$chunk": bytes(value).hex(), "first": value.isfirst, "last": value.islast}
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {"$map": [[to_json(k), to_json(v)] for k, v in value.items()]}
    if isinstance(value, set | frozenset):
        return {"$set": [to_json(v) for v in value]}
    raise ValueError(f"cannot convert {type(value).__name__}")


def _text(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    if isinstance(value, list | tuple | dict | set):
        return to_json(value)
    return value


class FrameCutter:
    """Cuts a byte stream into Mercurial ``frame`` objects (Mercurial's own header parser)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self.buffer += data
        frames = []
        size = wireprotoframing.FRAME_HEADER_SIZE
        while len(self.buffer) >= size:
            h = wireprotoframing.parseheader(bytes(self.buffer[:size]))
            if len(self.buffer) < size + h.length:
                break
            payload = bytes(self.buffer[size : size + h.length])
            del self.buffer[: size + h.length]
            frames.append(
                wireprotoframing.frame(
                    h.requestid, h.streamid, h.streamflags, h.typeid, h.flags, payload
                )
            )
        return frames


class Peer:
    """State of the reactors hosted here."""

    def __init__(self) -> None:
        self.server: Any = None
        self.server_cutter = FrameCutter()
        self.out_stream: Any = None
        self.client: Any = None
        self.client_cutter = FrameCutter()
        self.decoders: dict[int, Any] = {}
        self.results: dict[int, dict[str, Any]] = {}

    # server side -------------------------------------------------------------------

    def server_new(self, req: dict[str, Any]) -> dict[str, Any]:
        self.server = wireprotoframing.serverreactor(None, deferoutput=req["deferoutput"])
        self.server_cutter = FrameCutter()
        self.out_stream = None
        return {}

    def _frames(self, action: Any) -> list[str]:
        name, meta = action
        if name == b"sendframes":
            return [bytes(f).hex() for f in meta[b"framegen"]]
        return []

    def server_feed(self, req: dict[str, Any]) -> dict[str, Any]:
        actions: list[dict[str, Any]] = []
        frames: list[str] = []
        for frame in self.server_cutter.feed(bytes.fromhex(req["data"])):
            name, meta = self.server.onframerecv(frame)
            entry: dict[str, Any] = {"action": name.decode()}
            if name == b"runcommand":
                entry.update(
                    requestid=meta[b"requestid"],
                    command=meta[b"command"].hex(),
                    args=to_json(meta[b"args"]),
                    redirect=to_json(meta[b"redirect"]),
                    data=None if meta[b"data"] is None else meta[b"data"].hex(),
                )
            elif name == b"error":
                entry["message"] = _text(meta[b"message"])
            elif name == b"wantframe":
                entry["state"] = meta[b"state"].decode()
            elif name == b"sendframes":
                frames.extend(self._frames((name, meta)))
            actions.append(entry)
        return {"actions": actions, "frames": frames, "buffered": len(self.server_cutter.buffer)}

    def _stream(self) -> Any:
        if self.out_stream is None:
            self.out_stream = self.server.makeoutputstream()
        return self.out_stream

    def server_respond(self, req: dict[str, Any]) -> dict[str, Any]:
        def objects() -> Any:
            for obj in req["objects"]:
                if isinstance(obj, dict) and "$raise" in obj:
                    raise error.Abort(obj["$raise"].encode())
                if isinstance(obj, dict) and "$indefinite" in obj:
                    chunks = [bytes.fromhex(c) for c in obj["$indefinite"]]
                    yield wireprototypes.indefinitebytestringresponse(chunks)
                    continue
                yield to_py(obj)

        stream = self._stream()
        action = self.server.oncommandresponsereadyobjects(stream, req["requestid"], objects())
        return {"frames": self._frames(action), "encoder": _text(stream._encodername)}

    def server_commanderror(self, req: dict[str, Any]) -> dict[str, Any]:
        args = [bytes.fromhex(a) for a in req.get("args") or []]
        action = self.server.oncommanderror(
            self._stream(), req["requestid"], bytes.fromhex(req["message"]), args or None
        )
        return {"frames": self._frames(action)}

    def server_servererror(self, req: dict[str, Any]) -> dict[str, Any]:
        action = self.server.onservererror(
            self._stream(), req["requestid"], bytes.fromhex(req["message"])
        )
        return {"frames": self._frames(action)}

    def server_eof(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"frames": self._frames(self.server.oninputeof())}

    # client side -------------------------------------------------------------------

    def client_new(self, req: dict[str, Any]) -> dict[str, Any]:
        encoders = req.get("encoders")
        self.client = wireprotoframing.clientreactor(
            None,
            hasmultiplesend=req.get("hasmultiplesend", False),
            buffersends=req.get("buffersends", True),
            clientcontentencoders=None if encoders is None else [e.encode() for e in encoders],
        )
        self.client_cutter = FrameCutter()
        self.decoders = {}
        self.results = {}
        return {}

    def client_call(self, req: dict[str, Any]) -> dict[str, Any]:
        data = req.get("data")
        request, name, meta = self.client.callcommand(
            bytes.fromhex(req["command"]),
            to_py(req["args"]),
            datafh=None if data is None else io.BytesIO(bytes.fromhex(data)),
        )
        rid = request.requestid
        self.decoders[rid] = cborutil.bufferingdecoder()
        self.results[rid] = {"objects": [], "eos": False, "error": None, "decode_error": None}
        return {"requestid": rid, "frames": self._frames((name, meta))}

    def client_flush(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"frames": self._frames(self.client.flushcommands())}

    def client_feed(self, req: dict[str, Any]) -> dict[str, Any]:
        actions: list[dict[str, Any]] = []
        for frame in self.client_cutter.feed(bytes.fromhex(req["data"])):
            name, meta = self.client.onframerecv(frame)
            entry: dict[str, Any] = {"action": name.decode()}
            if name == b"responsedata":
                rid = meta[b"request"].requestid
                entry.update(requestid=rid, eos=bool(meta[b"eos"]))
                decoder = self.decoders[rid]
                if self.results[rid].get("decode_error") is None:
                    try:
                        decoder.decode(meta[b"data"])
                    except cborutil.CBORDecodeError as e:
                        self.results[rid]["decode_error"] = _text(e.args[0])
                    self.results[rid]["objects"].extend(to_json(decoder.getavailable()))
                if meta[b"eos"]:
                    self.results[rid]["eos"] = True
            elif name == b"error":
                entry["message"] = _text(meta[b"message"])
                if b"request" in meta:
                    rid = meta[b"request"].requestid
                    entry["requestid"] = rid
                    entry["type"] = _text(meta[b"type"])
                    self.results[rid]["error"] = {
                        "type": entry["type"],
                        "message": entry["message"],
                    }
            actions.append(entry)
        return {"actions": actions, "buffered": len(self.client_cutter.buffer)}

    def cbor_encode(self, req: dict[str, Any]) -> dict[str, Any]:
        """Each typed JSON value through ``cborutil.streamencode``, joined, as hex."""
        return {"encoded": [b"".join(cborutil.streamencode(to_py(v))).hex() for v in req["values"]]}

    def cbor_decodeall(self, req: dict[str, Any]) -> dict[str, Any]:
        """Each input (hex) through ``cborutil.decodeall``: values or the error message."""
        out: list[dict[str, Any]] = []
        for data in req["inputs"]:
            try:
                values = cborutil.decodeall(bytes.fromhex(data))
                out.append({"values": to_json(values)})
            except Exception as e:
                out.append(
                    {"error": type(e).__name__, "message": _text(e.args[0] if e.args else "")}
                )
        return {"results": out}

    def client_results(self, req: dict[str, Any]) -> dict[str, Any]:
        results = {}
        for rid, res in self.results.items():
            decoder = self.decoders[rid]
            pending = sum(len(c) for c in decoder._chunks)
            results[str(rid)] = dict(res, pending=pending)
        return {"results": results}


def main() -> None:
    peer = Peer()
    stdout = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            answer = getattr(peer, req["op"])(req)
            answer["ok"] = True
        except Exception as e:
            answer = {
                "ok": False,
                "raises": {
                    "type": type(e).__name__,
                    "message": _text(getattr(e, "message", None) or str(e)),
                    "traceback": traceback.format_exc(),
                },
            }
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()


if __name__ == "__main__":
    main()
