"""Replay of ``http_v2_exchange.json`` (recorded from a 6.0 server) against the ASGI app.

Each recorded request (method, target, headers, body) is sent to hgwire serving the
vector repository with the named configuration. Compared with 6.0: status code and
reason, Content-Type (and its absence), ``Allow``, text bodies byte for byte, CBOR bodies
decoded, and framed bodies decoded per request (objects; revision data after applying
deltas, see ``tests.commands.test_v2_replay.normalize``; indefinite byte strings joined;
error-response maps). Frame boundaries are not compared (hgwire batches differently).

Documented differences (hgwire's better answers, asserted below in ``BETTER``):

* 6.0's HTTP 500 cases (empty body, truncated frames, invalid CBOR, an ``encoded``
  request frame, a request never completed) are protocol errors: ``200 text/plain``
  with a message, like 6.0's other protocol errors;
* only unknown content encodings: hgwire answers with ``identity`` (6.0 breaks mid-body);
* ``ro/pushkey``: refused with 403 (6.0 performs the write).

The handshake's ``v1capabilities`` is compared only when ``commands/v1.py`` provides
the v1 ``capabilities`` command (else a stand-in is used).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hgwire.commands.registry import REGISTRY
from hgwire.repo.localrepo import Repository
from hgwire.server.app import HgwireApp
from hgwire.wire import cbor
from hgwire.wire.frames import MAX_PAYLOAD_LENGTH, FrameReader, FrameType
from tests.commands.test_v2_replay import normalize
from tests.conftest import VECTORS
from tests.server.conftest import VECTOR_CONFIGS, call, decode_frames, join_chunks, make_app
from tests.wire.cborjson import from_json

DATA = json.loads((VECTORS / "http_v2_exchange.json").read_text())
CASES = {c["name"]: c for c in DATA["cases"]}

#: Cases where hgwire deliberately answers differently: (status, content type, body test).
BETTER: dict[str, tuple[int, str, str]] = {
    "empty body": (200, "text/plain", "no command request received\n"),
    "truncated frame header": (200, "text/plain", "frame"),
    "truncated frame payload": (200, "text/plain", "frame"),
    "invalid CBOR in request": (200, "text/plain", "error decoding CBOR from command request"),
    "encoded request frame": (200, "text/plain", "received encoded frame from client"),
    "request never completed": (200, "text/plain", "end of input before request 1 was complete"),
    "push command via ro URL": (
        403,
        "text/plain",
        "insufficient permissions to execute command: pushkey",
    ),
}


@pytest.fixture(scope="module")
def apps(public_repo: Path) -> dict[str, HgwireApp]:
    return {name: make_app(public_repo, cfg) for name, cfg in VECTOR_CONFIGS.items()}


def send_case(app: HgwireApp, case: dict[str, Any], pieces: int = 1) -> Any:
    req = case["request"]
    headers = [(k, v) for k, v in req["headers"]]
    return call(app, req["method"], req["target"], headers, bytes.fromhex(req["body_hex"]),
                body_pieces=pieces)  # fmt: skip


def _content_type(headers: list[list[str]] | list[tuple[str, str]]) -> str | None:
    for k, v in headers:
        if k.lower() == "content-type":
            return v
    return None


def request_commands(body: bytes) -> dict[int, tuple[bytes, dict[bytes, Any]]]:
    """Request id -> (command, args) from the command-request frames of a request body."""
    payloads: dict[int, bytearray] = {}
    for frame in FrameReader(MAX_PAYLOAD_LENGTH).feed(body):
        if frame.type_id == FrameType.COMMAND_REQUEST:
            payloads.setdefault(frame.request_id, bytearray()).extend(frame.payload)
    out = {}
    for rid, raw in payloads.items():
        m = cbor.Decoder().feed(bytes(raw))[0]
        out[rid] = (m[b"name"], m.get(b"args", {}))
    return out


def compare_framed(repo: Repository, case: dict[str, Any], body: bytes) -> None:
    _, ours = decode_frames(body)
    commands = request_commands(bytes.fromhex(case["request"]["body_hex"]))
    expected = {r["requestid"]: r for r in case["response"]["responses"]}
    assert set(ours) == set(expected)
    for rid, rec in expected.items():
        got = ours[rid]
        if "error_frame" in rec:
            assert got.error == from_json(rec["error_frame"])
            continue
        name, args = commands[rid]
        want = join_chunks(from_json(rec["objects"]))
        assert got.eos
        assert normalize(repo, name, args, got.objects) == normalize(repo, name, args, want)


#: Checked by test_unknown_encodings_get_identity (6.0's recorded body is broken).
SEPARATE = {"unknown content encodings only"}


@pytest.mark.parametrize("name", sorted(set(CASES) - SEPARATE))
def test_vector_case(apps: dict[str, HgwireApp], public_repo: Path, name: str) -> None:
    case = CASES[name]
    app = apps[case["server_config"]]
    rsp = case["response"]
    got = send_case(app, case)
    if name in BETTER:
        status, ctype, needle = BETTER[name]
        assert got.status == status
        assert got.header("content-type") == ctype
        text = got.body.decode()
        assert needle in text and text.strip()
        # 6.0 answered 500 or misbehaved here; the server keeps serving afterwards.
        again = send_case(app, CASES["heads"])
        assert again.status == 200
        return
    assert got.status == rsp["status"]
    assert got.reason == rsp["reason"]
    assert got.header("content-type") == _content_type(rsp["headers"])
    if any(k == "Allow" for k, _ in rsp["headers"]):
        assert got.header("allow") == dict(rsp["headers"])["Allow"]
    expected_body = bytes.fromhex(rsp["body_hex"])
    ctype = got.header("content-type")
    if "responses" in rsp:
        compare_framed(Repository.open(public_repo), case, got.body)
    elif ctype == "application/mercurial-cbor":
        ours = cbor.loads(got.body)
        theirs = cbor.loads(expected_body)
        assert set(ours) == set(theirs)
        assert ours[b"apibase"] == theirs[b"apibase"]
        assert ours[b"apis"] == theirs[b"apis"]
        if REGISTRY.v1.get(b"capabilities") is not None:
            assert ours[b"v1capabilities"] == theirs[b"v1capabilities"]
        else:
            assert ours[b"v1capabilities"].startswith(b"batch ")
    elif ctype == "application/mercurial-0.1" and name.startswith("handshake"):
        if REGISTRY.v1.get(b"capabilities") is not None:
            assert got.body == expected_body
    else:
        assert got.body == expected_body


def test_unknown_encodings_get_identity(apps: dict[str, HgwireApp], public_repo: Path) -> None:
    """6.0 breaks the body after the status; hgwire falls back to identity."""
    case = CASES["unknown content encodings only"]
    got = send_case(apps["default"], case)
    assert (
        got.status == 200 and got.header("content-type") == "application/mercurial-exp-framing-0006"
    )
    frames, ours = decode_frames(got.body)
    assert cbor.loads(bytes(frames[0].payload)) == b"identity"
    heads = decode_frames(send_case(apps["default"], CASES["heads"]).body)[1]
    assert ours[1].objects == heads[1].objects and ours[1].eos


@pytest.mark.parametrize(
    "name",
    [
        "multirequest",
        "changesetdata dagrange, all fields",
        "multirequest with interleaved frames",
        "filesdata all",
    ],
)
def test_body_in_small_pieces(apps: dict[str, HgwireApp], public_repo: Path, name: str) -> None:
    """The body arriving in many small ASGI messages gives the same answer."""
    case = CASES[name]
    whole = send_case(apps["default"], case)
    pieces = send_case(apps["default"], case, pieces=len(case["request"]["body_hex"]) // 6)
    assert pieces.status == whole.status == 200
    assert decode_frames(pieces.body)[1].keys() == decode_frames(whole.body)[1].keys()
    compare_framed(Repository.open(public_repo), case, pieces.body)


def test_every_case_replayed() -> None:
    """Case names are unique (none shadowed) and each is replayed by one of the tests."""
    assert len(CASES) == len(DATA["cases"])
    assert set(CASES) >= SEPARATE | set(BETTER)
