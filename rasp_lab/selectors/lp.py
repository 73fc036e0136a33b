"""The linear program behind "does this composition fit one head on these blocks?".

Unknowns x = [tables, key biases, BOS-query terms, BOS const, M(q)...]; one row per
realised (query tuple, key tuple) pair: selected pairs score M(q) (equalities), unselected
ones at least 1 below BOS, and BOS at least 1 below M(q) where q selects something. Pairs
no input realises have no row. Feasible: max-margin weights. Infeasible: the dual gives a
Farkas certificate, checked afterwards in exact rational arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

import numpy as np
import scipy.optimize
import scipy.sparse

from rasp_lab.selectors.heads import Block, FarkasCertificate, HeadWeights

LP_TIME_LIMIT = 60.0
"""Seconds HiGHS may spend on one LP before the verdict is reported as undecided."""


class LPStopped(Exception):
    """The solver hit its time limit: neither weights nor a certificate."""


class LinearProgram:
    def __init__(
        self,
        pattern: np.ndarray,
        realised: np.ndarray,
        q_blocks: tuple[Block, ...],
        k_blocks: tuple[Block, ...],
        q_idx: Mapping[int, np.ndarray],
        k_idx: Mapping[int, np.ndarray],
        *,
        width: bool = False,
        time_limit: float = LP_TIME_LIMIT,
    ) -> None:
        """`pattern`, `realised`: [n_q, n_k] bool; `q_idx[j]`: [n_q] index of each query
        tuple's value in query block j (likewise `k_idx`)."""
        self.pattern, self.realised = pattern, realised
        self.q_blocks, self.k_blocks = q_blocks, k_blocks
        self.q_idx, self.k_idx = q_idx, k_idx
        self.width, self.time_limit = width, time_limit
        offset = 0
        self.table_off: dict[tuple[int, int], int] = {}
        for j, qb in enumerate(q_blocks):
            for i, kb in enumerate(k_blocks):
                self.table_off[(j, i)] = offset
                offset += qb.width * kb.width
        self.bias_off: dict[int, int] = {}
        for i, kb in enumerate(k_blocks):
            self.bias_off[i] = offset
            offset += kb.width
        self.bos_off: dict[int, int] = {}
        for j, qb in enumerate(q_blocks):
            self.bos_off[j] = offset
            offset += qb.width
        self.bos_const = offset
        offset += 1
        self.n_weights = offset
        self.m_off = offset
        offset += pattern.shape[0]
        self.n_vars = offset
        self._build()

    def logit_cols(self, q: int, k: int) -> list[int]:
        cols = []
        for (j, i), off in self.table_off.items():
            cols.append(off + self.q_idx[j][q] * self.k_blocks[i].width + self.k_idx[i][k])
        for i, off in self.bias_off.items():
            cols.append(off + self.k_idx[i][k])
        return cols

    def bos_cols(self, q: int) -> list[int]:
        return [off + self.q_idx[j][q] for j, off in self.bos_off.items()] + [self.bos_const]

    def _build(self) -> None:
        """The constraint rows, built as whole [n_q, n_k] index grids (no Python loop over pairs)."""
        pattern, realised = self.pattern, self.realised
        n_q, n_k = pattern.shape
        logit_cols = [
            off + self.q_idx[j][:, None] * self.k_blocks[i].width + self.k_idx[i][None, :]
            for (j, i), off in self.table_off.items()
        ] + [np.broadcast_to(off + self.k_idx[i][None, :], (n_q, n_k)) for i, off in self.bias_off.items()]
        bos_cols = [off + self.q_idx[j] for j, off in self.bos_off.items()] + [np.full(n_q, self.bos_const)]
        m_cols = self.m_off + np.arange(n_q)

        sel_q, sel_k = np.nonzero(pattern & realised)
        n_eq = len(sel_q)
        eq_rows = np.concatenate([np.arange(n_eq)] * (len(logit_cols) + 1))
        eq_cols = np.concatenate([c[sel_q, sel_k] for c in logit_cols] + [m_cols[sel_q]])
        eq_vals = np.concatenate([np.ones(n_eq)] * len(logit_cols) + [-np.ones(n_eq)])
        self.eq_meta = list(zip(sel_q.tolist(), sel_k.tolist()))

        has_selected = np.flatnonzero((pattern & realised).any(axis=1))
        if self.width:
            # SelectorWidth heads attend BOS alongside the selected keys: BOS(q) = M(q).
            rows = n_eq + np.arange(len(has_selected))
            eq_rows = np.concatenate([eq_rows] + [rows] * (len(bos_cols) + 1))
            eq_cols = np.concatenate([eq_cols] + [c[has_selected] for c in bos_cols] + [m_cols[has_selected]])
            eq_vals = np.concatenate([eq_vals] + [np.ones(len(rows))] * len(bos_cols) + [-np.ones(len(rows))])
            self.eq_meta += [(q, -1) for q in has_selected.tolist()]
            n_eq += len(rows)
            has_selected = has_selected[:0]

        un_q, un_k = np.nonzero(~pattern & realised)
        n_un = len(un_q)
        n_bb = len(has_selected)
        un_rows = np.arange(n_un)
        bb_rows = n_un + np.arange(n_bb)
        ub_rows = np.concatenate(
            [un_rows] * (len(logit_cols) + len(bos_cols)) + [bb_rows] * (len(bos_cols) + 1)
        )
        ub_cols = np.concatenate(
            [c[un_q, un_k] for c in logit_cols]
            + [c[un_q] for c in bos_cols]
            + [c[has_selected] for c in bos_cols]
            + [m_cols[has_selected]]
        )
        ub_vals = np.concatenate(
            [np.ones(n_un)] * len(logit_cols)
            + [-np.ones(n_un)] * len(bos_cols)
            + [np.ones(n_bb)] * len(bos_cols)
            + [-np.ones(n_bb)]
        )
        self.ub_meta = [("unselected", q, k) for q, k in zip(un_q.tolist(), un_k.tolist())] + [
            ("bos-below-selected", q, -1) for q in has_selected.tolist()
        ]
        self.A_eq = scipy.sparse.csr_matrix((eq_vals, (eq_rows, eq_cols)), shape=(n_eq, self.n_vars))
        self.A_ub = scipy.sparse.csr_matrix((ub_vals, (ub_rows, ub_cols)), shape=(n_un + n_bb, self.n_vars))

    def feasible(self, sparse: bool = False) -> HeadWeights | None:
        """Weights meeting every row with margin 1 (free variables: an exact decision), or
        None. `sparse`: among them, the smallest sum of |weights| (such weights tend to
        leave an SOp the others determine unread); raises LPStopped at the time limit."""
        n_eq = self.A_eq.shape[0]
        n = self.n_vars
        a_ub, a_eq = self.A_ub, self.A_eq
        cost = np.zeros(n)
        bounds: list[tuple[float | None, float | None]] = [(None, None)] * n
        if sparse:
            # x = p - m with p, m >= 0 on the weights; minimise sum(p + m).
            w = self.n_weights
            lift = scipy.sparse.hstack([scipy.sparse.identity(w), -scipy.sparse.identity(w)])
            split = scipy.sparse.block_diag([lift, scipy.sparse.identity(n - w)]).tocsr()
            a_ub, a_eq = a_ub @ split, a_eq @ split
            cost = np.concatenate([np.ones(2 * w), np.zeros(n - w)])
            bounds = [(0, None)] * (2 * w) + [(None, None)] * (n - w)
        result = scipy.optimize.linprog(
            cost,
            A_ub=a_ub,
            b_ub=-np.ones(a_ub.shape[0]),
            A_eq=a_eq if n_eq else None,
            b_eq=np.zeros(n_eq) if n_eq else None,
            bounds=bounds,
            method="highs-ds",
            options={"time_limit": self.time_limit},
        )
        if result.status == 1:
            raise LPStopped
        if result.status != 0:
            return None
        x = result.x
        if sparse:
            w = self.n_weights
            x = np.concatenate([x[:w] - x[w : 2 * w], x[2 * w :]])
        return self._weights(x[: self.n_vars])

    def _weights(self, x: np.ndarray) -> HeadWeights:
        tables = {
            (j, i): x[off : off + self.q_blocks[j].width * self.k_blocks[i].width].reshape(
                self.q_blocks[j].width, self.k_blocks[i].width
            )
            for (j, i), off in self.table_off.items()
        }
        bias = {i: x[off : off + self.k_blocks[i].width] for i, off in self.bias_off.items()}
        bos = {j: x[off : off + self.q_blocks[j].width] for j, off in self.bos_off.items()}
        return HeadWeights(self.q_blocks, self.k_blocks, tables, bias, bos, float(x[self.bos_const]), 1.0)

    def certificate(
        self, query_tuples: tuple[tuple, ...], key_tuples: tuple[tuple, ...]
    ) -> FarkasCertificate | None:
        """z >= 0 on the inequalities and y on the equalities with A_ub^T z + A_eq^T y = 0 and
        sum z = 1: the constraints (all homogeneous but their margin of 1) then sum to 0 <= -1."""
        n_ub, n_eq = self.A_ub.shape[0], self.A_eq.shape[0]
        # Variables [z (n_ub, >= 0), y (n_eq, free)]; A_ub^T z + A_eq^T y = 0; sum z = 1.
        ones = scipy.sparse.csr_matrix(np.ones((1, n_ub)))
        if n_eq:
            a = scipy.sparse.vstack(
                [
                    scipy.sparse.hstack([self.A_ub.T, self.A_eq.T]),
                    scipy.sparse.hstack([ones, scipy.sparse.csr_matrix((1, n_eq))]),
                ]
            ).tocsr()
        else:
            a = scipy.sparse.vstack([self.A_ub.T, ones]).tocsr()
        b = np.zeros(a.shape[0])
        b[-1] = 1.0
        cost = np.concatenate([np.ones(n_ub), np.zeros(n_eq)])  # prefer sparse certificates
        bounds = [(0, None)] * n_ub + [(None, None)] * n_eq
        result = scipy.optimize.linprog(
            cost, A_eq=a, b_eq=b, bounds=bounds, method="highs", options={"time_limit": self.time_limit}
        )
        if result.status == 1:
            raise LPStopped
        if result.status != 0:
            return None
        z, y = result.x[:n_ub], result.x[n_ub:]
        return self._rationalise(z, y, query_tuples, key_tuples)

    def _rationalise(self, z, y, query_tuples, key_tuples) -> FarkasCertificate:
        zr = [Fraction(float(v)).limit_denominator(10**6) if v > 1e-12 else Fraction(0) for v in z]
        yr = [Fraction(float(v)).limit_denominator(10**6) if abs(v) > 1e-12 else Fraction(0) for v in y]
        exact = combination_is_zero(self.A_ub, self.A_eq, zr, yr)
        inequalities = tuple(
            (kind, query_tuples[q], key_tuples[k] if k >= 0 else (), weight)
            for (kind, q, k), weight in zip(self.ub_meta, zr)
            if weight != 0
        )
        equalities = tuple(
            (query_tuples[q], key_tuples[k], weight)
            for (q, k), weight in zip(self.eq_meta, yr)
            if weight != 0 and k >= 0
        )
        return FarkasCertificate(inequalities, equalities, exact)


def combination_is_zero(a_ub, a_eq, z: list[Fraction], y: list[Fraction]) -> bool:
    if any(v < 0 for v in z) or sum(z) <= 0:
        return False
    total: dict[int, Fraction] = {}
    for matrix, weights in ((a_ub.tocoo(), z), (a_eq.tocoo(), y)):
        for r, c, v in zip(matrix.row, matrix.col, matrix.data):
            if weights[r]:
                total[c] = total.get(c, Fraction(0)) + weights[r] * Fraction(float(v))
    return all(v == 0 for v in total.values())
