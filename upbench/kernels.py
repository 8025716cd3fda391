"""PLACEHOLDER until the compiled ops land: nothing is built, everything runs the reference path."""
from __future__ import annotations


def compiled_available() -> bool:
    return False


def require_compiled(operator: str) -> None:
    raise RuntimeError(f"{operator}: compiled ops are not built yet")


def dynamic_assembly(weights, x, K):
    raise RuntimeError("compiled ops are not built yet")


def local_similarity(query, key, K):
    raise RuntimeError("compiled ops are not built yet")


def sapa_fused(query, key, value, K):
    raise RuntimeError("compiled ops are not built yet")
