"""Repository requirements: what the ``requires`` files say and whether hgwire honours them.

A requirement names an on-disk format feature; a reader must refuse any it does not
understand rather than misread the repository (spec §1.2, §1.4). With ``share-safe`` the
list is split between ``.hg/requires`` (working-copy features) and ``.hg/store/requires``.
"""

from __future__ import annotations

from collections.abc import Iterable

from hgwire.errors import RepositoryError
from hgwire.repo.vfs import VFS

REVLOGV1 = b"revlogv1"
STORE = b"store"
FNCACHE = b"fncache"
DOTENCODE = b"dotencode"
GENERALDELTA = b"generaldelta"
SPARSEREVLOG = b"sparserevlog"
ZSTD = b"revlog-compression-zstd"
SHARESAFE = b"share-safe"
SHARED = b"shared"
RELSHARED = b"relshared"
NODEMAP = b"persistent-nodemap"
BOOKMARKS_IN_STORE = b"bookmarksinstore"
INTERNAL_PHASE = b"internal-phase"
INTERNAL_PHASE_2 = b"internal-phase-2"
ARCHIVED_PHASE = b"exp-archived-phase"
DIRSTATE_V2 = b"dirstate-v2"
DIRSTATE_TRACKED_KEY = b"dirstate-tracked-key-v1"
SPARSE = b"exp-sparse"
TREEMANIFEST = b"treemanifest"

#: Requirements that live in ``.hg/requires`` even with share-safe (spec §1.2).
WORKING_DIR_REQUIREMENTS: frozenset[bytes] = frozenset(
    {SHARESAFE, SHARED, RELSHARED, SPARSE, DIRSTATE_V2, DIRSTATE_TRACKED_KEY}
)

#: Everything hgwire reads and writes correctly (spec §1.4). Working-copy formats are
#: accepted because hgwire has no working directory: it never reads the dirstate.
SUPPORTED: frozenset[bytes] = frozenset(
    {
        REVLOGV1,
        STORE,
        FNCACHE,
        DOTENCODE,
        GENERALDELTA,
        SPARSEREVLOG,
        ZSTD,
        SHARESAFE,
        SHARED,
        RELSHARED,
        NODEMAP,
        BOOKMARKS_IN_STORE,
        INTERNAL_PHASE,
        INTERNAL_PHASE_2,
        ARCHIVED_PHASE,
        DIRSTATE_V2,
        DIRSTATE_TRACKED_KEY,
        SPARSE,
    }
)

#: The formats ``Repository.create`` can write, as ``hg init`` of that version writes
#: them with a zstd-enabled, Rust-less build (spec §1.3).
FORMATS: dict[str, frozenset[bytes]] = {
    "6.0": frozenset(
        {DOTENCODE, FNCACHE, GENERALDELTA, ZSTD, REVLOGV1, SPARSEREVLOG, STORE},
    ),
    "7.2": frozenset(
        {SHARESAFE, DOTENCODE, FNCACHE, GENERALDELTA, ZSTD, REVLOGV1, SPARSEREVLOG, STORE},
    ),
}


def parse(data: bytes, name: str = "requires") -> set[bytes]:
    """The names in one ``requires`` file (one per line; like Mercurial, blank lines and a
    missing final newline are tolerated)."""
    result: set[bytes] = set()
    offset = 0
    for line in data.splitlines(keepends=True):
        entry = line.rstrip(b"\r\n")
        if entry:
            if any(c <= 0x20 or c >= 0x7F for c in entry):
                raise RepositoryError(f"{name}: invalid requirement {entry!r} at offset {offset}")
            result.add(entry)
        offset += len(line)
    return result


def serialize(reqs: Iterable[bytes]) -> bytes:
    """The ``requires`` file content Mercurial writes: sorted, one name per line."""
    return b"".join(r + b"\n" for r in sorted(set(reqs)))


def read(hgvfs: VFS, storevfs: VFS | None = None) -> frozenset[bytes]:
    """The effective requirement set of the repository whose ``.hg`` is ``hgvfs``.

    With ``share-safe`` the store's ``requires`` is merged in (spec §1.2); a share-safe
    repository without ``store/requires`` is damaged.
    """
    reqs = parse(hgvfs.tryread("requires"), str(hgvfs.join("requires")))
    if SHARESAFE in reqs:
        svfs = storevfs if storevfs is not None else VFS(hgvfs.join("store"))
        if not svfs.exists("requires"):
            raise RepositoryError(f"{svfs.join('requires')}: missing (share-safe repository)")
        reqs |= parse(svfs.read("requires"), str(svfs.join("requires")))
    return frozenset(reqs)


def check(reqs: Iterable[bytes]) -> None:
    """Raise :class:`RepositoryError` naming every requirement hgwire does not support."""
    reqset = set(reqs)
    unknown = sorted(reqset - SUPPORTED)
    if unknown:
        names = ", ".join(r.decode("ascii", "replace") for r in unknown)
        raise RepositoryError(f"repository requires features unknown to hgwire: {names}")
    if REVLOGV1 not in reqset:
        raise RepositoryError("repository without revlogv1 (revlog version 0) is not supported")
    if STORE not in reqset:
        raise RepositoryError("repository without the 'store' layout is not supported")
    if DOTENCODE in reqset and FNCACHE not in reqset:
        raise RepositoryError("'dotencode' requirement without 'fncache'")


def split(reqs: Iterable[bytes]) -> tuple[frozenset[bytes], frozenset[bytes]]:
    """(``.hg/requires`` content, ``.hg/store/requires`` content) for ``reqs``.

    Without share-safe everything goes to ``.hg/requires`` and the store file is absent
    (returned empty).
    """
    reqset = frozenset(reqs)
    if SHARESAFE not in reqset:
        return reqset, frozenset()
    return reqset & WORKING_DIR_REQUIREMENTS, reqset - WORKING_DIR_REQUIREMENTS


def write(hgvfs: VFS, reqs: Iterable[bytes]) -> None:
    """Write the requires file(s) for ``reqs`` atomically (spec §1.2)."""
    wc, store = split(reqs)
    hgvfs.atomic_write("requires", serialize(wc))
    if store:
        hgvfs.atomic_write("store/requires", serialize(store))


def for_format(fmt: str) -> frozenset[bytes]:
    """Requirements of a new repository in the default format of Mercurial ``fmt``."""
    try:
        return FORMATS[fmt]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise RepositoryError(f"unknown repository format {fmt!r} (known: {known})") from None
