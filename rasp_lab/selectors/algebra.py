"""The algebra of selector compositions, without value sets: atoms, nesting depth and
rebalancing, and negation pushed through `&` / `|` (De Morgan)."""

from __future__ import annotations

from rasp_lab import rasp
from rasp_lab.selectors.tables import conjunct_pairs


def selector_atoms(selector: rasp.Selector) -> list[rasp.Selector]:
    """The Select / ConstantSelector leaves of a composition (not the selectors further up
    the program that its SOps are computed from), left to right, without repeats. Iterative,
    so a composition of thousands of atoms doesn't recurse."""
    found: list[rasp.Selector] = []
    seen: set[int] = set()
    stack: list[rasp.RASPExpr] = [selector]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, (rasp.Select, rasp.ConstantSelector)):
            found.append(node)
        else:
            stack.extend(reversed(node.children))
    return found


MAX_DEPTH = 200
"""Deepest selector composition handed to the compiler's (recursive) table builders; a
deeper one is first rebalanced (`&` / `|` chains, double negations)."""


def nesting_depth(selector: rasp.Selector) -> int:
    """How many selector levels `selector` nests (an atom is 1), without recursing."""
    depth: dict[int, int] = {}
    stack: list[tuple[rasp.RASPExpr, bool]] = [(selector, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in depth:
            continue
        children = [c for c in node.children if isinstance(c, rasp.Selector)]
        if expanded or not children:
            depth[id(node)] = 1 + max((depth[id(c)] for c in children), default=0)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in depth)
    return depth[id(selector)]


def shallow_equivalent(selector: rasp.Selector) -> rasp.Selector:
    """`selector` itself if it nests at most MAX_DEPTH levels; else the same selection with
    `&` and `|` chains rebalanced and double negations dropped (same atoms, same order of
    conjuncts), or a ValueError naming the selector if it is still too deep."""
    depth = nesting_depth(selector)
    if depth <= MAX_DEPTH:
        return selector
    try:
        shallow = _rebalanced(selector)
    except RecursionError:
        shallow = None
    if shallow is None or nesting_depth(shallow) > MAX_DEPTH:
        raise ValueError(
            f"selector {selector.label!r} nests {depth} levels deep, and alternates &, | and ~ too "
            f"often to rebalance under {MAX_DEPTH} levels; write it with fewer nested levels"
        )
    return shallow


def _chain(selector: rasp.Selector, kind: type) -> list[rasp.Selector]:
    """The operands of a chain of `kind` (SelectorAnd or SelectorOr), left to right."""
    parts: list[rasp.Selector] = []
    stack: list[rasp.Selector] = [selector]
    while stack:
        node = stack.pop()
        if type(node) is kind:
            stack.extend((node.snd, node.fst))  # type: ignore[attr-defined]
        else:
            parts.append(node)
    return parts


def _rebalanced(selector: rasp.Selector) -> rasp.Selector:
    while isinstance(selector, rasp.SelectorNot) and isinstance(selector.inner, rasp.SelectorNot):
        selector = selector.inner.inner
    if isinstance(selector, rasp.SelectorNot):
        return rasp.SelectorNot(_rebalanced(selector.inner))
    if isinstance(selector, (rasp.SelectorAnd, rasp.SelectorOr)):
        kind = type(selector)
        parts = [_rebalanced(part) for part in _chain(selector, kind)]
        while len(parts) > 1:
            paired = [kind(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
            parts = paired + parts[len(parts) - len(parts) % 2 :]
        return parts[0]
    return selector


def involved_sops(selector: rasp.Selector) -> dict[str, rasp.SOp]:
    """label -> SOp for every SOp an atom of the composition reads."""
    sops: dict[str, rasp.SOp] = {}
    for atom in selector_atoms(selector):
        if isinstance(atom, rasp.Select):
            sops.setdefault(atom.keys.label, atom.keys)
            sops.setdefault(atom.queries.label, atom.queries)
        else:
            sops.setdefault(rasp.indices.label, rasp.indices)
    return sops


def negate(selector: rasp.Selector) -> rasp.Selector:
    """~selector with the negation pushed through & and | (De Morgan), ~~A = A."""
    if isinstance(selector, rasp.SelectorNot):
        return push_negations(selector.inner)
    if isinstance(selector, rasp.SelectorAnd):
        return rasp.SelectorOr(negate(selector.fst), negate(selector.snd))
    if isinstance(selector, rasp.SelectorOr):
        return rasp.SelectorAnd(negate(selector.fst), negate(selector.snd))
    return rasp.SelectorNot(selector)


def push_negations(selector: rasp.Selector) -> rasp.Selector:
    """`selector` with every negation inside it pushed down to the atoms (unchanged, same
    object, if it has none above an atom), so ~(~A | B) & C reads as A & ~B & C."""
    if isinstance(selector, rasp.SelectorNot):
        return negate(selector.inner)
    if isinstance(selector, (rasp.SelectorAnd, rasp.SelectorOr)):
        fst, snd = push_negations(selector.fst), push_negations(selector.snd)
        if fst is selector.fst and snd is selector.snd:
            return selector
        return type(selector)(fst, snd)
    return selector


def is_conjunction(selector: rasp.Selector) -> bool:
    """A conjunction of groups that each read one (key SOp, query SOp) pair: one head of
    summed tables, no LP (see rasp_lab.selectors.tables)."""
    return all(len(pairs) == 1 for pairs in conjunct_pairs(selector))
