"""Requirements files (spec §1.2–1.4): parsing, share-safe split, refusal of unknown ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hgwire.errors import RepositoryError
from hgwire.repo import requirements as reqmod
from hgwire.repo.localrepo import Repository
from hgwire.repo.vfs import VFS
from tests.conftest import HgRunner


def test_parse_and_serialize_round_trip() -> None:
    data = b"store\nrevlogv1\nfncache\n"
    assert reqmod.parse(data) == {b"store", b"revlogv1", b"fncache"}
    assert reqmod.serialize(reqmod.parse(data)) == b"fncache\nrevlogv1\nstore\n"
    assert reqmod.parse(b"") == set()
    assert reqmod.parse(b"store") == {b"store"}  # missing final newline tolerated, like hg


def test_parse_rejects_binary_garbage() -> None:
    with pytest.raises(RepositoryError, match=r"requires: invalid requirement .* offset 6"):
        reqmod.parse(b"store\nre\x00vlog\n")


def test_check_names_unknown_requirements() -> None:
    reqs = reqmod.FORMATS["7.2"] | {b"exp-revlogv2.2", b"treemanifest"}
    with pytest.raises(RepositoryError, match=r"exp-revlogv2\.2, treemanifest"):
        reqmod.check(reqs)


@pytest.mark.parametrize("missing", [b"revlogv1", b"store"])
def test_check_refuses_ancient_layouts(missing: bytes) -> None:
    with pytest.raises(RepositoryError, match=missing.decode()):
        reqmod.check(reqmod.FORMATS["6.0"] - {missing})


def test_working_copy_requirements_accepted() -> None:
    reqmod.check(reqmod.FORMATS["7.2"] | {b"dirstate-v2", b"persistent-nodemap"})


def test_split_share_safe() -> None:
    wc, store = reqmod.split(reqmod.FORMATS["7.2"] | {b"dirstate-v2"})
    assert wc == {b"share-safe", b"dirstate-v2"}
    assert b"share-safe" not in store and b"store" in store
    wc, store = reqmod.split(reqmod.FORMATS["6.0"])
    assert wc == reqmod.FORMATS["6.0"] and store == frozenset()


def test_read_share_safe_needs_store_requires(tmp_path: Path) -> None:
    vfs = VFS(tmp_path)
    vfs.atomic_write("requires", b"share-safe\n")
    with pytest.raises(RepositoryError, match="store/requires: missing"):
        reqmod.read(vfs)
    vfs.atomic_write("store/requires", b"revlogv1\nstore\n")
    assert reqmod.read(vfs) == {b"share-safe", b"revlogv1", b"store"}


@pytest.mark.parametrize("where", ["requires", "store/requires"])
def test_open_refuses_unknown_requirement(tmp_path: Path, where: str) -> None:
    repo = Repository.create(tmp_path / "r")
    path = repo.path / where
    path.write_bytes(path.read_bytes() + b"exp-something-new\n")
    with pytest.raises(RepositoryError, match="exp-something-new"):
        Repository.open(tmp_path / "r")


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.interop
@pytest.mark.parametrize(("fmt", "runner"), [("6.0", "hg60"), ("7.2", "hg72")])
def test_create_writes_what_hg_init_writes(
    tmp_path: Path, fmt: str, runner: str, request: pytest.FixtureRequest
) -> None:
    hg: HgRunner = request.getfixturevalue(runner)
    hg("init", tmp_path / "hg")
    Repository.create(tmp_path / "ours", format=fmt)
    assert _tree(tmp_path / "ours") == _tree(tmp_path / "hg")
    reqs = Repository.open(tmp_path / "hg").requirements
    assert reqs == reqmod.FORMATS[fmt]


# (Mercurial, config for hg init, requirement it adds) — each written by that version
ACCEPTED_CONFIGS = [
    ("hg72", "format.bookmarks-in-store=yes", b"bookmarksinstore"),
    ("hg60", "format.internal-phase=yes", b"internal-phase"),
    ("hg72", "format.exp-archived-phase=yes", b"exp-archived-phase"),
    ("hg72", "format.use-dirstate-tracked-hint=yes", b"dirstate-tracked-key-v1"),
    ("hg72", "format.use-share-safe=no", None),
    ("hg60", "format.revlog-compression=zlib", None),
    ("hg72", "format.sparse-revlog=no", None),
    ("hg60", "format.dotencode=no", None),
    ("hg72", "format.dotencode=no", None),
    ("hg60", "format.usefncache=no", None),  # plain "store": reversible encoding, no fncache
    ("hg72", "format.usefncache=no", None),
]
REFUSED_CONFIGS = [
    ("hg60", "experimental.treemanifest=yes", "treemanifest"),
    ("hg72", "experimental.treemanifest=yes", "treemanifest"),
    (
        "hg72",
        "format.exp-use-changelog-v2=enable-unstable-format-and-corrupt-my-data",
        "exp-changelog-v2",
    ),
    ("hg60", "experimental.revlogv2=enable-unstable-format-and-corrupt-my-data", "exp-revlogv2.2"),
    ("hg72", "format.use-delta-info-flags=yes", "delta-info-revlog"),
]


def _ondisk(root: Path) -> set[bytes]:
    reqs = reqmod.parse((root / ".hg" / "requires").read_bytes())
    if (root / ".hg" / "store" / "requires").exists():
        reqs |= reqmod.parse((root / ".hg" / "store" / "requires").read_bytes())
    return reqs


@pytest.mark.interop
@pytest.mark.parametrize(("runner", "config", "expected"), ACCEPTED_CONFIGS)
def test_non_default_formats_hg_writes_are_read_and_written(
    tmp_path: Path, runner: str, config: str, expected: bytes | None, request: pytest.FixtureRequest
) -> None:
    from tests.repo.test_localrepo import _commit

    hg: HgRunner = request.getfixturevalue(runner)
    root = tmp_path / "r"
    hg("init", root, "--config", config)
    (root / "Some File.txt").write_text("hello\n")
    hg("commit", "-Am", "by hg", "--config", config, cwd=root)
    repo = Repository.open(root)
    assert repo.requirements == _ondisk(root)
    if expected is not None:
        assert expected in repo.requirements
    assert repo.file(b"Some File.txt").read(0) == b"hello\n"
    _commit(repo, {b"Some File.txt": b"again\n", b"Other/New.txt": b"new\n"}, b"by hgwire")
    hg("verify", "--config", config, cwd=root)
    assert hg("cat", "-r", "tip", "Other/New.txt", cwd=root).stdout == b"new\n"


@pytest.mark.interop
@pytest.mark.parametrize(("runner", "config", "name"), REFUSED_CONFIGS)
def test_experimental_formats_are_refused_by_name(
    tmp_path: Path, runner: str, config: str, name: str, request: pytest.FixtureRequest
) -> None:
    hg: HgRunner = request.getfixturevalue(runner)
    root = tmp_path / "r"
    hg("init", root, "--config", config)
    assert name.encode() in _ondisk(root)
    with pytest.raises(RepositoryError, match=re.escape(name)):
        Repository.open(root)
