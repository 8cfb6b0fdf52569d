"""Merkle tree hashes, inclusion and consistency proofs over the audit log (RFC 9162 section 2.1, as RFC 6962).

Leaves are audit entries; an entry's ``hash`` already is its RFC 6962 leaf hash, SHA-256(0x00 || canonical entry)
(see ``audit.chain``). Interior nodes are SHA-256(0x01 || left || right). The tree over n leaves splits at k, the
largest power of two smaller than n (RFC 9162 section 2.1.1), so a tree grows without rehashing its past.

Producing proofs needs subtree hashes. ``SubtreeSource`` answers "hash of leaves [start, end)" and the functions
here ask it only for ranges of the shape the algorithms need; ``audit.tree_store`` answers from stored perfect
subtrees in O(log n). Verification (``verify_inclusion``, ``verify_consistency``) needs nothing but the proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162 section 2.1.1: MTH({}) = SHA-256()

# hash of the leaves [start, end); end > start
SubtreeSource = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof does not verify, or was asked for with impossible sizes."""


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) computed directly from leaf hashes (RFC 9162 section 2.1.1)."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    # Bottom-up pairing gives the same tree as the recursive definition: an odd node is carried up unchanged.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def inclusion_path(index: int, size: int, subtree: SubtreeSource) -> list[bytes]:
    """PATH(m, D[n]) (RFC 9162 section 2.1.3.1) for leaf ``index`` in the tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size} leaves")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start = start + k
    return list(reversed(path))


def consistency_path(old_size: int, new_size: int, subtree: SubtreeSource) -> list[bytes]:
    """PROOF(m, D[n]) (RFC 9162 section 2.1.4.1) that the first ``old_size`` leaves are a prefix of the tree."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == new_size:
        return []

    def subproof(m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [subtree(start, end)]
        k = split_point(n)
        if m <= k:
            return subproof(m, start, start + k, whole) + [subtree(start + k, end)]
        return subproof(m - k, start + k, end, False) + [subtree(start, start + k)]

    return subproof(old_size, 0, new_size, True)


def root_from_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes]) -> bytes:
    """The root a correct inclusion proof implies (RFC 9162 section 2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size} leaves")
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes) -> None:
    """Raise ``ProofError`` unless ``path`` proves ``leaf`` at ``index`` in the tree of ``size`` with ``root``."""
    if root_from_inclusion(index, size, leaf, path) != root:
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the root of tree size {size}")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
                       ) -> None:
    """RFC 9162 section 2.1.4.2: raise ``ProofError`` unless the old tree is a prefix of the new one."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for the same tree size {old_size}")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node of the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is too short")
    if fr != old_root:
        raise ProofError(f"the consistency proof does not lead to the old root (size {old_size})")
    if sr != new_root:
        raise ProofError(f"the consistency proof does not lead to the new root (size {new_size})")


class Frontier:
    """The right edge of a growing tree: its perfect subtrees, largest first (a "compact range").

    Appending a leaf merges equal-sized subtrees exactly as RFC 9162's tree shape requires, and reports each
    perfect subtree it completes; ``root`` folds the edge into MTH of the tree so far. O(log n) memory.
    """

    def __init__(self, size: int = 0, edge: list[tuple[int, bytes]] | None = None) -> None:
        self.size = size
        self.edge: list[tuple[int, bytes]] = list(edge or [])  # (level, hash)

    def copy(self) -> Frontier:
        return Frontier(self.size, self.edge)

    def push(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf; returns the (level, index, hash) of every perfect subtree it completes (one on average)."""
        return self.push_subtree(0, leaf)

    def push_subtree(self, level: int, digest: bytes) -> list[tuple[int, int, bytes]]:
        """Add the perfect subtree of ``2**level`` leaves with hash ``digest`` (the tree's size must be a multiple
        of ``2**level``); returns the (level, index, hash) of every larger subtree it completes."""
        if self.size % (1 << level):
            raise ValueError(f"a subtree of 2**{level} leaves cannot start at leaf {self.size}")
        completed = []
        current, index = digest, self.size >> level
        self.size += 1 << level
        while self.edge and self.edge[-1][0] == level:
            _, left = self.edge.pop()
            current = node_hash(left, current)
            level, index = level + 1, index // 2
            completed.append((level, index, current))
        self.edge.append((level, current))
        return completed

    def root(self) -> bytes:
        if not self.edge:
            return EMPTY_ROOT
        root = self.edge[-1][1]
        for _, left in reversed(self.edge[:-1]):
            root = node_hash(left, root)
        return root
