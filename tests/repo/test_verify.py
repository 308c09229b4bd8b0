"""``verify``: clean on Mercurial's repositories, and it finds damage where hg does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hgwire.repo.localrepo import Repository
from hgwire.repo.verify import VerifyReport, verify
from tests.conftest import make_runner
from tests.repo import hgrepos

pytestmark = pytest.mark.interop


def run_verify(path: Path) -> VerifyReport:
    return verify(Repository.open(path, recover=False))


def hg_verify_status(hg: Path, path: Path) -> int:
    return make_runner(hg)("verify", cwd=path, check=False).returncode


def test_clean_on_generated_repos(full_repo: hgrepos.GeneratedRepo) -> None:
    report = run_verify(full_repo.path)
    assert report.problems == []
    assert report.status == 0
    facts = full_repo.facts()
    assert report.changesets == len(facts["changesets"])
    assert report.files == len(facts["filelogs"])
    assert report.changes == sum(len(v) for v in facts["filelogs"].values())


def test_clean_on_vector_repo(public_repo: Path) -> None:
    report = run_verify(public_repo)
    assert report.problems == [] and report.status == 0
    assert report.changesets == 8


@pytest.mark.slow
def test_clean_on_corpus(corpus10k: Path) -> None:
    report = run_verify(corpus10k)
    assert report.problems == []
    assert report.changesets == 10_000


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("target", "where"),
    [
        ("data/a.txt.i", -1),  # last byte: inside the last revision's chunk
        ("data/big.bin.d", 300_000),  # a split revlog's data file
        ("00manifest.i", -1),
        ("00changelog.d", 100),  # 7.2 writes a split changelog
        ("00changelog.i", 64 * 3 + 40),  # a node in the index
    ],
)
def test_flipped_byte_detected(
    full_repo72: hgrepos.GeneratedRepo,
    repo_copy: Callable[[Path], Path],
    target: str,
    where: int,
) -> None:
    path = repo_copy(full_repo72.path)
    store = path / ".hg" / "store"
    file = store / target
    _flip(file, where if where >= 0 else file.stat().st_size + where)
    report = run_verify(path)
    assert report.status == 1
    assert report.errors >= 1
    name = target.removeprefix("data/").removesuffix(".i").removesuffix(".d")
    text = "\n".join(p.format() for p in report.problems)
    assert name.replace("00", "") in text or target in text, text
    assert hg_verify_status(full_repo72.hg, path) != 0  # Mercurial agrees it is damaged


def test_truncated_and_missing_files(
    full_repo60: hgrepos.GeneratedRepo, repo_copy: Callable[[Path], Path]
) -> None:
    path = repo_copy(full_repo60.path)
    store = path / ".hg" / "store"
    big = store / "data" / "big.bin.d"
    big.write_bytes(big.read_bytes()[:-10])
    (store / "data" / "stable.txt.i").unlink()
    report = run_verify(path)
    lines = [p.format() for p in report.problems]
    assert " big.bin@?: data length off by -10 bytes" in lines
    assert any(line.startswith(" 4: empty or missing stable.txt") for line in lines), lines
    assert report.status == 1
    assert report.first_damaged is not None
    assert hg_verify_status(full_repo60.hg, path) == 1


def test_fncache_and_journal_warnings(
    full_repo60: hgrepos.GeneratedRepo, repo_copy: Callable[[Path], Path]
) -> None:
    path = repo_copy(full_repo60.path)
    store = path / ".hg" / "store"
    fncache = store / "fncache"
    lines = fncache.read_bytes().splitlines(keepends=True)
    fncache.write_bytes(b"".join(x for x in lines if x != b"data/b.txt.i\n"))
    (store / "journal").write_bytes(b"")
    report = run_verify(path)
    messages = [p.format() for p in report.problems]
    assert " warning: revlog 'data/b.txt.i' not in fncache!" in messages
    assert "abandoned transaction found - run hg recover" in messages
    assert report.errors == 0 and report.warnings == 2 and report.status == 0


def test_manifest_referencing_missing_file_revision(
    full_repo60: hgrepos.GeneratedRepo, repo_copy: Callable[[Path], Path]
) -> None:
    """Cut the last revision off a filelog: manifests then name a file node that is gone."""
    path = repo_copy(full_repo60.path)
    store = path / ".hg" / "store"
    index = store / "data" / "a.txt.i"
    data = index.read_bytes()
    # walk the inline revlog to the start of its last entry
    pos = last = 0
    while pos < len(data):
        last = pos
        pos += 64 + int.from_bytes(data[pos + 8 : pos + 12], "big")
    index.write_bytes(data[:last])
    report = run_verify(path)
    messages = [p.format() for p in report.problems]
    assert any("a.txt@" in m and "manifest refers to unknown revision" in m for m in messages)
    assert hg_verify_status(full_repo60.hg, path) == 1


def test_missing_copy_source(
    full_repo60: hgrepos.GeneratedRepo, repo_copy: Callable[[Path], Path]
) -> None:
    """README.md was renamed from README.txt: losing the source's filelog is reported for
    the copy too."""
    path = repo_copy(full_repo60.path)
    (path / ".hg" / "store" / "data" / "_r_e_a_d_m_e.txt.i").unlink()
    messages = [p.format() for p in run_verify(path).problems]
    assert any(
        m.startswith(" README.md@1: empty or missing copy source revlog README.txt:")
        for m in messages
    ), messages
    assert " 0: empty or missing README.txt" in messages
    assert hg_verify_status(full_repo60.hg, path) == 1


def _inline_entry_offsets(data: bytes) -> list[int]:
    offsets = []
    pos = 0
    while pos < len(data):
        offsets.append(pos)
        pos += 64 + int.from_bytes(data[pos + 8 : pos + 12], "big")
    return offsets


def test_wrong_linkrev_detected(
    full_repo60: hgrepos.GeneratedRepo, repo_copy: Callable[[Path], Path]
) -> None:
    """A linkrev is not hashed: pointing a.txt's revision 1 at changeset 2 (which does not
    touch a.txt) is only caught by the linkrev cross-check."""
    path = repo_copy(full_repo60.path)
    index = path / ".hg" / "store" / "data" / "a.txt.i"
    data = bytearray(index.read_bytes())
    entry = _inline_entry_offsets(bytes(data))[1]
    assert int.from_bytes(data[entry + 20 : entry + 24], "big") == 1
    data[entry + 20 : entry + 24] = (2).to_bytes(4, "big")
    index.write_bytes(bytes(data))
    messages = [p.format() for p in run_verify(path).problems]
    assert " a.txt@?: rev 1 points to unexpected changeset 2" in messages, messages
    assert any(m.startswith(" (expected 0 1") for m in messages), messages
    assert hg_verify_status(full_repo60.hg, path) == 1
