"""Interop: hgwire reads what real Mercurial reads, on hg-generated and shared repositories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.repo import hgrepos

pytestmark = pytest.mark.interop


def test_generated_repos_agree_between_versions(
    full_repo60: hgrepos.GeneratedRepo, full_repo72: hgrepos.GeneratedRepo
) -> None:
    """Both Mercurial versions build the same history (same nodes), in their own format."""
    a, b = full_repo60.facts(), full_repo72.facts()
    assert [c["node"] for c in a["changelog"]] == [c["node"] for c in b["changelog"]]
    assert "share-safe" not in a["requires"]
    assert "share-safe" in b["requires"]
    assert (full_repo72.hgdir / "store" / "requires").is_file()
    assert len(a["changesets"]) == 18
    assert a["changesets"][7]["parents"] == [6, 5]


def test_public_repo_facts_match_hg(
    public_repo: Path, public_repo_facts: dict[str, Any], hg60_path: Path
) -> None:
    facts = hgrepos.hg_facts(hg60_path, public_repo)
    recorded = [c["node"] for c in public_repo_facts["changesets"]]
    assert [c["node"] for c in facts["changelog"]] == recorded
