"""Compiled BM25 top-k search (numba): windowed MaxScore over the term-major postings, exact.

Turtle & Flood's MaxScore: terms are ordered by their score bound (a term's largest weight times
its count in the query). Once the k-th best score exceeds the summed bounds of the weakest terms,
those "non-essential" terms can no longer bring a row into the top k alone: only rows of the
other ("essential") terms are candidates, and they look the weak terms up only while their bound
can still beat the k-th best. Rows are taken in windows of WINDOW rows (as Lucene's MaxScore bulk
scorer): the essential terms' postings in a window are added into cache-resident arrays and a
bitmap of touched rows, which are then visited in row order. A weak term that is dense in the
window is read whole into the window (one pass) instead of being searched row by row.

Exactness: a surviving row's score is computed as the numpy path computes it, the float32 sum of
its weights in query-token order; bounds are float64 sums of float32 weights widened by `slack`
(more than a float32 sum's rounding error over the query's tokens), so a row is dropped only when
it cannot reach the k-th best. Ties go to the lower row, as in the numpy path.

Used when numba is installed; `BM25Retriever` falls back to the numpy path otherwise (tests
compare the two).
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - exercised where numba is missing
    numba = None


def available() -> bool:
    return numba is not None


def _bisect(indices, lo: int, hi: int, row: int) -> int:
    """First position in indices[lo:hi] holding a value >= row (sorted)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if indices[mid] < row:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _gallop(indices, lo: int, hi: int, row: int) -> int:
    """First position in indices[lo:hi] holding a value >= row (sorted): a few steps one by one
    (the usual gap between looked-up rows, and predictable), then doubling, then bisecting."""
    for _ in range(8):
        if lo >= hi or indices[lo] >= row:
            return lo
        lo += 1
    step = 1
    probe = lo
    while probe < hi and indices[probe] < row:
        lo = probe + 1
        probe = lo + step
        step *= 2
    return _bisect(indices, lo, min(probe, hi), row)


def _non_essential(cum, slack: float, threshold: float) -> int:
    """How many of the weakest terms cannot, all together, lift a row above the threshold."""
    ne = 0
    while ne < len(cum) and cum[ne] * slack < threshold:
        ne += 1
    return ne


def _worst(heap_rows, heap_scores, size: int) -> int:
    """The heap slot of the k-th best: lowest score, and among equal scores the highest row."""
    worst = 0
    for j in range(1, size):
        if heap_scores[j] < heap_scores[worst] or (
            heap_scores[j] == heap_scores[worst] and heap_rows[j] > heap_rows[worst]
        ):
            worst = j
    return worst


def _top_k(indices, data, starts, ends, mult, bounds, token_terms, k: int, slack: float):
    """Best k (rows, scores) of the terms [starts[i], ends[i]) in the postings, terms sorted by
    ascending bound; `token_terms` lists the query's tokens as term positions (summing order).

    Per window: the essential terms' postings are added into `acc` (partial scores) and `bits`
    (touched rows); the strongest weak term is read whole if it is dense there; each touched row
    then looks up the weak terms from the strongest down while its bound can still beat the k-th
    best, and a survivor gets its exact score (its essential weights found in the window)."""
    n = len(starts)
    cur = starts.copy()
    cum = np.cumsum(bounds)
    acc = np.zeros(WINDOW, dtype=np.float64)  # the essential terms' partial score of each row
    first = np.zeros(n, dtype=np.int64)  # each essential term's first posting in the window
    dense = np.zeros(n, dtype=np.bool_)  # weak terms read whole into this window
    dense_bits = np.zeros((n, WINDOW // 64), dtype=np.uint64)  # their rows in the window
    dense_weight = np.zeros((n, WINDOW), dtype=np.float32)  # their weights (valid where the bit is set)
    bits = np.zeros(WINDOW // 64, dtype=np.uint64)
    looked_up = np.zeros(n, dtype=np.float32)  # the current row's weight of each term
    heap_rows = np.full(k, -1, dtype=np.int64)
    heap_scores = np.zeros(k, dtype=np.float32)
    size, worst, threshold, ne = 0, 0, 0.0, 0
    big = np.iinfo(np.int64).max
    one = np.uint64(1)
    while True:
        lo = big
        for i in range(ne, n):
            if cur[i] < ends[i] and indices[cur[i]] < lo:
                lo = indices[cur[i]]
        if lo == big:
            break
        hi = lo + WINDOW
        for i in range(ne, n):
            j, end, m = cur[i], ends[i], mult[i]
            first[i] = j
            while j < end and indices[j] < hi:
                r = indices[j] - lo
                acc[r] += data[j] * m
                bits[r >> 6] |= one << np.uint64(r & 63)
                j += 1
            cur[i] = j
        ne_w = ne  # fixed for the window (the threshold only rises, so it stays safe)
        touched = 0
        for i in range(ne, n):
            touched += cur[i] - first[i]
        for i in range(ne_w - 1, max(ne_w - DENSE_TERMS, 0) - 1, -1):
            a = _gallop(indices, cur[i], ends[i], lo)
            b = _gallop(indices, a, ends[i], hi)
            dense[i] = b - a <= DENSE_RATIO * touched  # one pass costs less than a search per row
            if dense[i]:
                for w in range(WINDOW // 64):
                    dense_bits[i, w] = 0
                for j in range(a, b):
                    r = indices[j] - lo
                    dense_weight[i, r] = data[j]
                    dense_bits[i, r >> 6] |= one << np.uint64(r & 63)
                cur[i] = b
            else:
                cur[i] = a
        for word in range(WINDOW // 64):
            b = bits[word]
            if b == 0:
                continue
            bits[word] = 0
            while b != 0:
                r = word * 64 + np.int64(_cttz(b))
                b &= b - one
                partial = acc[r]
                acc[r] = 0.0
                row = lo + r
                dropped = False
                for i in range(ne_w - 1, -1, -1):
                    if (partial + cum[i]) * slack < threshold:
                        dropped = True
                        break
                    looked_up[i] = 0.0
                    if dense[i]:
                        if (dense_bits[i, r >> 6] >> np.uint64(r & 63)) & one:
                            looked_up[i] = dense_weight[i, r]
                            partial += looked_up[i] * mult[i]
                        continue
                    c = _gallop(indices, cur[i], ends[i], row)
                    cur[i] = c
                    if c < ends[i] and indices[c] == row:
                        looked_up[i] = data[c]
                        partial += looked_up[i] * mult[i]
                if dropped:
                    continue
                for i in range(ne_w, n):  # the essential terms' weights, found in their window
                    c = _bisect(indices, first[i], cur[i], row)
                    looked_up[i] = data[c] if c < cur[i] and indices[c] == row else 0.0
                score = np.float32(0.0)
                for t in token_terms:
                    score = np.float32(score + looked_up[t])
                if score <= 0:
                    continue
                if size == k and (score < heap_scores[worst] or (score == heap_scores[worst] and row > heap_rows[worst])):
                    continue
                slot = size if size < k else worst
                heap_rows[slot] = row
                heap_scores[slot] = score
                size = min(size + 1, k)
                if size == k:
                    worst = _worst(heap_rows, heap_scores, size)
                    threshold = heap_scores[worst]
        for i in range(ne_w):
            dense[i] = False
        ne = _non_essential(cum, slack, threshold)
    return heap_rows[:size], heap_scores[:size]


WINDOW = 4096  # rows per window (a multiple of 64): its arrays stay in the L1 / L2 caches
DENSE_TERMS = 1  # how many of the strongest weak terms may be read whole into a window
DENSE_RATIO = 4  # ... when they have at most this many postings there per essential posting

if numba is not None:
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def _cttz(typingctx, x):
        """Trailing zero bits of a uint64 (LLVM's cttz): the next touched row of a bitmap word."""

        def codegen(context, builder, signature, args):
            return builder.cttz(args[0], context.get_constant(types.boolean, True))

        return types.uint64(types.uint64), codegen

    _worst = numba.njit(cache=True, nogil=True)(_worst)
    _bisect = numba.njit(cache=True, nogil=True)(_bisect)
    _gallop = numba.njit(cache=True, nogil=True)(_gallop)
    _non_essential = numba.njit(cache=True, nogil=True)(_non_essential)
    _top_k = numba.njit(cache=True, nogil=True)(_top_k)


def top_k(indices, data, indptr, max_weight, ids: list[int], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k rows of the query term ids `ids` (repeats count again), with their float32 scores,
    best first, ties to the lower row; rows scoring 0 are left out."""
    terms, token_terms, mult = np.unique(np.asarray(ids, dtype=np.int64), return_inverse=True, return_counts=True)
    bounds = max_weight[terms].astype(np.float64) * mult
    order = np.argsort(bounds, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    terms, bounds, mult = terms[order], bounds[order], mult[order].astype(np.float64)
    slack = 1.0 + 1e-6 * (len(ids) + 1)
    rows, scores = _top_k(
        indices,
        data,
        indptr[terms].astype(np.int64),
        indptr[terms + 1].astype(np.int64),
        mult,
        bounds,
        rank[token_terms].astype(np.int64),
        k,
        slack,
    )
    best = np.lexsort((rows, -scores))
    return rows[best], scores[best]
