"""RFC 9162 Merkle hashes and proofs against the Certificate Transparency test vectors and brute force."""

from __future__ import annotations

import hashlib

import pytest

from audit.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_path,
    inclusion_path,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

# The 8 leaves of RFC 6962's reference tests (certificate-transparency-go, merkletree tests).
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                         "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def source(leaves: list[bytes]):  # type: ignore[no-untyped-def]
    return lambda start, end: root_from_leaves(leaves[start:end])


@pytest.mark.parametrize("size", sorted(CT_ROOTS))
def test_roots_match_the_ct_reference_vectors(size: int) -> None:
    assert root_from_leaves([leaf_hash(d) for d in CT_LEAVES[:size]]).hex() == CT_ROOTS[size]


def test_empty_tree_root() -> None:
    assert root_from_leaves([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_every_inclusion_proof_verifies_and_no_wrong_one_does() -> None:
    for size in range(1, 40):
        leaves = [leaf_hash(str(i).encode()) for i in range(size)]
        root = root_from_leaves(leaves)
        for index in range(size):
            path = inclusion_path(index, size, source(leaves))
            verify_inclusion(index, size, leaves[index], path, root)
            with pytest.raises(ProofError):
                verify_inclusion(index, size, leaf_hash(b"forged"), path, root)
            if size > 1:
                with pytest.raises(ProofError):
                    verify_inclusion((index + 1) % size, size, leaves[index], path, root)
                with pytest.raises(ProofError):
                    verify_inclusion(index, size, leaves[index], path[:-1], root)


def test_every_consistency_proof_verifies_and_no_wrong_one_does() -> None:
    leaves = [leaf_hash(str(i).encode()) for i in range(33)]
    for new in range(1, 34):
        new_root = root_from_leaves(leaves[:new])
        for old in range(1, new + 1):
            old_root = root_from_leaves(leaves[:old])
            proof = consistency_path(old, new, source(leaves))
            verify_consistency(old, new, old_root, new_root, proof)
            if old < new:
                with pytest.raises(ProofError):
                    verify_consistency(old, new, leaf_hash(b"x"), new_root, proof)
                with pytest.raises(ProofError):
                    verify_consistency(old, new, old_root, leaf_hash(b"x"), proof)
                with pytest.raises(ProofError):
                    verify_consistency(old, new, old_root, new_root, proof[:-1])


def test_a_rewritten_history_is_inconsistent() -> None:
    honest = [leaf_hash(str(i).encode()) for i in range(10)]
    rewritten = [*honest[:3], leaf_hash(b"edited"), *honest[4:]]
    proof = consistency_path(5, 10, source(rewritten))
    with pytest.raises(ProofError):
        verify_consistency(5, 10, root_from_leaves(honest[:5]), root_from_leaves(rewritten), proof)


@pytest.mark.parametrize(("index", "size"), [(-1, 3), (3, 3), (0, 0)])
def test_impossible_inclusion_requests(index: int, size: int) -> None:
    with pytest.raises(ProofError):
        inclusion_path(index, size, source([]))


@pytest.mark.parametrize(("old", "new"), [(0, 3), (4, 3)])
def test_impossible_consistency_requests(old: int, new: int) -> None:
    with pytest.raises(ProofError):
        consistency_path(old, new, source([]))


def test_frontier_matches_the_recursive_definition_and_reports_every_subtree() -> None:
    from audit.merkle import Frontier

    leaves = [leaf_hash(str(i).encode()) for i in range(70)]
    frontier, completed = Frontier(), []
    for i, leaf in enumerate(leaves):
        completed += frontier.push(leaf)
        assert frontier.root() == root_from_leaves(leaves[: i + 1])
    expected = {(lv, idx) for lv in range(1, 7) for idx in range(70 >> lv)}
    assert {(lv, idx) for lv, idx, _ in completed} == expected
    for lv, idx, digest in completed:
        assert digest == root_from_leaves(leaves[idx << lv:(idx + 1) << lv])
    assert Frontier().root() == EMPTY_ROOT
