"""Dependency order of named gates (parents and boolean operands first), without recursion.

One iterative depth-first search serves the resolved gates (:func:`nkflow.gating.gates.
topological_order`) and the template check (:mod:`nkflow.gating.template`): a hierarchy
thousands of gates deep cannot hit Python's recursion limit. Each caller words the two
failures in its own error type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["DependencyCycle", "UnknownDependency", "dependency_order"]


class DependencyCycle(ValueError):
    """A gate depends on itself; ``chain`` runs from a start through the repeated gate."""

    def __init__(self, chain: tuple[str, ...]) -> None:
        super().__init__(" -> ".join(chain))
        self.chain = chain


class UnknownDependency(ValueError):
    """Gate ``gate`` depends on ``dependency``, which is not in the graph."""

    def __init__(self, gate: str, dependency: str) -> None:
        super().__init__(f"{gate!r} -> {dependency!r}")
        self.gate, self.dependency = gate, dependency


def dependency_order(deps: Mapping[str, Iterable[str]]) -> list[str]:
    """Every node after the nodes it depends on; otherwise in the mapping's order.

    Parameters
    ----------
    deps
        Node -> the nodes it depends on (in the order they are visited).

    Returns
    -------
    list of str
        The depth-first post-order from each node in turn.

    Raises
    ------
    DependencyCycle
        When a node depends on itself through others.
    UnknownDependency
        When a node depends on a name that is not a key of ``deps``.
    """
    out: list[str] = []
    done: set[str] = set()
    for start in deps:
        if start in done:
            continue
        chain = [start]
        on_chain = {start}
        stack = [iter(deps[start])]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                finished = chain.pop()
                on_chain.discard(finished)
                done.add(finished)
                out.append(finished)
                continue
            if nxt in done:
                continue
            if nxt in on_chain:
                raise DependencyCycle((*chain, nxt))
            if nxt not in deps:
                raise UnknownDependency(chain[-1], nxt)
            chain.append(nxt)
            on_chain.add(nxt)
            stack.append(iter(deps[nxt]))
    return out
