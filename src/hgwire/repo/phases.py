"""Phases: reading ``store/phaseroots``, every revision's phase, and moving boundaries.

Storage spec §6.1: the file lists *roots* as ``<phase> <hex node>`` lines; a revision's
phase is the highest phase among the roots that are its ancestors-or-self (public when
none, and everything is public when the file is missing). Because parents precede
children, one forward pass computes every phase: ``phase[r] = max(phase of parents,
phase of r as a root)``.

Writing stores the minimal roots of each phase (revisions of that phase none of whose
parents has it), grouped by phase and sorted by revision, which is what Mercurial 7.2
writes; Mercurial reads any root set with the same meaning. A server serves only
revisions below the secret phase (secret, archived and internal are hidden).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from hgwire.errors import LookupNodeError, RepositoryError
from hgwire.repo import dagops
from hgwire.repo.dagops import DAG
from hgwire.repo.store import store_key

PUBLIC = 0
DRAFT = 1
SECRET = 2
ARCHIVED = 32
INTERNAL = 96
ALL_PHASES = (PUBLIC, DRAFT, SECRET, ARCHIVED, INTERNAL)
PHASE_NAMES = {PUBLIC: "public", DRAFT: "draft", SECRET: "secret", ARCHIVED: "archived",
               INTERNAL: "internal"}  # fmt: skip
PHASE_NUMBERS = {name: number for number, name in PHASE_NAMES.items()}

# Requirements that allow the two special phases in the file (spec §1.4).
_PHASE_REQUIREMENTS = {
    ARCHIVED: (b"exp-archived-phase",),
    INTERNAL: (b"internal-phase", b"internal-phase-2"),
}

PhaseRoots = dict[int, set[int]]

# byte translation table: phase -> 1 if a server may expose it (public, draft) else 0
_SERVABLE = bytes(1 if p < SECRET else 0 for p in range(256))


class Transaction(Protocol):
    def addbackup(self, path: str, location: str = ...) -> None: ...


class _Changelog(Protocol):
    def __len__(self) -> int: ...

    def node(self, rev: int) -> bytes: ...

    def parentrevs(self, rev: int) -> tuple[int, int]: ...


def parse_phaseroots(
    data: bytes, rev_of: Callable[[bytes], int | None], name: str = "phaseroots"
) -> PhaseRoots:
    """Roots per phase from the file's bytes; lines naming unknown nodes are dropped (as
    Mercurial 7.2 does). Malformed lines raise :class:`RepositoryError` with their offset."""
    roots: PhaseRoots = {}
    offset = 0
    for line in data.splitlines(keepends=True):
        fields = line.split()
        if not fields:
            offset += len(line)
            continue
        try:
            if len(fields) != 2 or len(fields[1]) != 40:
                raise ValueError
            phase = int(fields[0])
            node = bytes.fromhex(fields[1].decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            raise RepositoryError(f"{name}: malformed line at offset {offset}: {line!r}") from None
        if phase not in PHASE_NAMES:
            raise RepositoryError(f"{name}: unknown phase {phase} at offset {offset}")
        offset += len(line)
        rev = rev_of(node)
        if rev is None or rev < 0:
            continue
        roots.setdefault(phase, set()).add(rev)
    return roots


def compute_phases(dag: DAG, roots: Mapping[int, Iterable[int]]) -> bytearray:
    """Every revision's phase (one byte each) from the roots."""
    n = len(dag)
    phase = bytearray(n)
    start = n
    for ph, revs in roots.items():
        for r in revs:
            if 0 <= r < n and phase[r] < ph:
                phase[r] = ph
                start = min(start, r)
    if start >= n:
        return phase
    # Revisions below the lowest root are public; above it, inherit the parents' maximum.
    # ``phase[-1]`` must read as public for nullrev parents: use a sentinel slot at the end.
    phase.append(0)
    p1, p2 = dag.p1, dag.p2
    for r, a, b in zip(range(start, n), p1[start:], p2[start:], strict=True):
        pa = phase[a]
        pb = phase[b]
        if pb > pa:
            pa = pb
        if pa > phase[r]:
            phase[r] = pa
    del phase[n]
    return phase


def minimal_roots(dag: DAG, phase: bytearray | bytes) -> dict[int, list[int]]:
    """The roots describing ``phase``: per non-public phase, revisions of that phase none of
    whose parents has it, ascending."""
    out: dict[int, list[int]] = {}
    p1, p2 = dag.p1, dag.p2
    for r in range(len(dag)):
        ph = phase[r]
        if not ph:
            continue
        a = p1[r]
        b = p2[r]
        if (a >= 0 and phase[a] == ph) or (b >= 0 and phase[b] == ph):
            continue
        out.setdefault(ph, []).append(r)
    return out


def serialize(roots: Mapping[int, Iterable[int]], node: Callable[[int], bytes]) -> bytes:
    """The file content: lines grouped by phase (ascending), revisions ascending."""
    lines = []
    for ph in sorted(roots):
        for r in sorted(roots[ph]):
            lines.append(b"%d %s\n" % (ph, node(r).hex().encode()))
    return b"".join(lines)


#: store -> (changelog length, tip node, phaseroots content, phases) of the last load
_CACHE: dict[str, tuple[int, bytes, bytes, bytes]] = {}
_CACHE_MAX = 16
_CACHE_LOCK = threading.Lock()


class PhaseCache:
    """The phases of one changelog snapshot, with boundary moves written through a
    transaction (``store/phaseroots`` replaced atomically after ``tr.addbackup``).

    :meth:`load` remembers the phases it computed per store (a server loads them per
    request) and reuses them while the changelog length, tip node and ``phaseroots``
    content are unchanged; each instance has its own copy to move boundaries in.
    """

    def __init__(
        self,
        dag: DAG,
        roots: Mapping[int, Iterable[int]],
        node: Callable[[int], bytes],
        requirements: Iterable[bytes] = (),
    ) -> None:
        self.dag = dag
        self._node = node
        self.requirements = frozenset(requirements)
        self.phases = compute_phases(dag, roots)
        self.dirty = False

    @classmethod
    def load(cls, repo: Any, dag: DAG | None = None) -> PhaseCache:
        """Read the phases of ``repo`` (an object with ``changelog``, ``svfs`` and
        ``requirements``, like :class:`~hgwire.repo.localrepo.Repository`)."""
        cl = repo.changelog
        if dag is None:
            dag = DAG.from_storage(cl)
        name = str(repo.svfs.join("phaseroots"))

        def rev_of(node: bytes) -> int | None:
            try:
                rev: int = cl.rev(node)
            except LookupNodeError:  # unknown node: dropped like Mercurial 7.2
                return None
            return rev if rev < len(dag) else None

        data = repo.svfs.tryread("phaseroots")
        n = len(dag)
        state = (n, cl.node(n - 1) if n else b"", data)
        key = store_key(repo)
        hit = _CACHE.get(key) if key is not None else None
        requirements = getattr(repo, "requirements", ())
        if hit is not None and hit[:3] == state:
            pc = cls(dag, {}, cl.node, requirements)
            pc.phases = bytearray(hit[3])
            return pc
        pc = cls(dag, parse_phaseroots(data, rev_of, name), cl.node, requirements)
        if key is not None:
            with _CACHE_LOCK:
                _CACHE.pop(key, None)
                _CACHE[key] = (*state, bytes(pc.phases))
                while len(_CACHE) > _CACHE_MAX:
                    del _CACHE[next(iter(_CACHE))]
        return pc

    def __len__(self) -> int:
        return len(self.phases)

    def phase(self, rev: int) -> int:
        """The phase of ``rev`` (nullrev is public)."""
        return self.phases[rev] if rev >= 0 else PUBLIC

    def revs(self, phase: int) -> list[int]:
        """Revisions in exactly ``phase``, ascending."""
        return [r for r in range(len(self.phases)) if self.phases[r] == phase]

    def roots(self) -> dict[int, list[int]]:
        """The minimal roots of every non-public phase."""
        return minimal_roots(self.dag, self.phases)

    def servable(self) -> bytearray:
        """One byte per revision: 1 when a server may expose it (phase below secret)."""
        return self.phases.translate(_SERVABLE)

    def hidden_revs(self) -> set[int]:
        """Revisions a server must not expose (secret, archived, internal)."""
        return {r for r, p in enumerate(self.phases) if p >= SECRET}

    def served_heads(self) -> list[int]:
        """Heads of the servable revisions, ascending."""
        return dagops.headrevs_filtered(self.dag, self.servable())

    def listkeys(self, publishing: bool, served: bytearray | None = None) -> dict[bytes, bytes]:
        """The ``phases`` pushkey namespace: hex draft roots -> ``b"1"`` among served
        revisions, plus ``publishing: True`` on a publishing server (spec §6.1)."""
        if served is None:
            served = self.servable()
        keys = {
            self._node(r).hex().encode(): b"%d" % DRAFT
            for r in self.roots().get(DRAFT, [])
            if served[r]
        }
        if publishing:
            keys[b"publishing"] = b"True"
        return keys

    def _check_phase(self, target: int) -> None:
        if target not in PHASE_NAMES:
            raise ValueError(f"unknown phase {target}")
        needed = _PHASE_REQUIREMENTS.get(target)
        if needed and not self.requirements & set(needed):
            raise RepositoryError(
                f"phase {PHASE_NAMES[target]} needs requirement {needed[-1].decode()}"
            )

    def advance_boundary(self, target: int, revs: Iterable[int]) -> list[int]:
        """Lower ``revs`` and their ancestors to at most ``target`` (e.g. make pushed
        changesets public); returns the revisions whose phase changed."""
        self._check_phase(target)
        seeds = [r for r in revs if r >= 0 and self.phases[r] > target]
        if not seeds:
            return []
        mark = dagops.ancestor_marks(self.dag, seeds)
        changed = []
        phases = self.phases
        for r in range(max(seeds) + 1):
            if mark[r] and phases[r] > target:
                phases[r] = target
                changed.append(r)
        self.dirty = self.dirty or bool(changed)
        return changed

    def retract_boundary(self, target: int, revs: Iterable[int]) -> list[int]:
        """Raise ``revs`` and their descendants to at least ``target`` (e.g. new
        changesets arriving as draft); returns the revisions whose phase changed."""
        self._check_phase(target)
        seeds = [r for r in revs if r >= 0 and self.phases[r] < target]
        if not seeds:
            return []
        mark = dagops.descendant_marks(self.dag, seeds)
        changed = []
        phases = self.phases
        for r in range(min(seeds), len(phases)):
            if mark[r] and phases[r] < target:
                phases[r] = target
                changed.append(r)
        self.dirty = self.dirty or bool(changed)
        return changed

    def extend(self, dag: DAG, newphase: int = DRAFT) -> None:
        """Grow to a longer changelog snapshot: new revisions get at least ``newphase``
        (and whatever they inherit from their parents)."""
        old = len(self.phases)
        self.dag = dag
        phases = self.phases
        phases.extend(bytes(len(dag) - old))
        p1, p2 = dag.p1, dag.p2
        for r in range(old, len(dag)):
            a, b = p1[r], p2[r]
            ph = newphase
            if a >= 0 and phases[a] > ph:
                ph = phases[a]
            if b >= 0 and phases[b] > ph:
                ph = phases[b]
            phases[r] = ph
        if newphase != PUBLIC and len(dag) > old:
            self.dirty = True

    def serialize(self) -> bytes:
        return serialize(self.roots(), self._node)

    def write(self, tr: Transaction, svfs: Any) -> None:
        """Write ``phaseroots`` inside ``tr`` (backed up first) if anything changed."""
        if not self.dirty:
            return
        tr.addbackup("phaseroots")
        svfs.atomic_write("phaseroots", self.serialize())
        self.dirty = False


def phase_of_name(name: str) -> int:
    """The phase number for a name (``public``, ``draft``...) or a decimal number."""
    if name in PHASE_NUMBERS:
        return PHASE_NUMBERS[name]
    try:
        number = int(name)
    except ValueError:
        raise ValueError(f"unknown phase {name!r}") from None
    if number not in PHASE_NAMES:
        raise ValueError(f"unknown phase {name!r}")
    return number
