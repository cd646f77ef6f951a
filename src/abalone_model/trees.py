"""XGBoost trees compiled to flat numpy arrays, for cheap exact prediction on a few rows.

``Booster.inplace_predict`` has a fixed cost of ~130 µs per call (for the default model, more
for bigger ones) whatever the batch size, which dominates a single-row request. Evaluating the
same trees with a handful of vectorised numpy operations costs a fraction of that for small
batches, so the model uses this evaluator below a row threshold and XGBoost above it.

Exactness follows XGBoost's CPU predictor: go left when ``fvalue < split_condition`` compared in
float32, a missing value (NaN) follows the node's default direction, and the leaf values are added
in float32 one tree after another, starting from ``base_score`` (identity link only).

``compile_booster`` returns None for anything it does not handle (another booster or objective,
categorical splits, several targets or classes), and the caller then simply keeps using XGBoost.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

# Objectives whose prediction is the raw margin (no link function to apply).
IDENTITY_OBJECTIVES = frozenset({"reg:squarederror"})


@dataclass(frozen=True)
class CompiledTrees:
    """All trees' nodes in one set of arrays; a node's right child is always ``left + 1``.

    A leaf points to itself (``left == id`` with a NaN threshold, so it never moves right) and
    holds its value in ``value``; internal nodes hold 0 there. Nodes are numbered tree by tree.
    """

    feature: np.ndarray  # intp: the split feature (0 for leaves)
    threshold: np.ndarray  # float32: the split condition (NaN for leaves)
    left: np.ndarray  # intp: the left child (the node itself for leaves)
    default_right: np.ndarray  # bool: where a missing value goes
    value: np.ndarray  # float32: leaf values
    roots: np.ndarray  # intp: the root of each tree, in boosting order
    depth: int  # levels to walk: the deepest leaf's depth

    def predict(self, X: np.ndarray) -> np.ndarray:
        """float32 predictions for a C-contiguous float32 (n, n_features) matrix.

        All rows walk all trees together, one level per step: each step is a few ``take``
        calls on an (n, trees) array of node ids, so a call costs tens of microseconds.
        """
        n = X.shape[0]
        flat = X.ravel()
        missing = bool(np.isnan(flat).any())
        if n == 1:  # the common request: skip the broadcasting and the row offsets
            node, offset = self.roots[None, :], None
        else:
            node = np.broadcast_to(self.roots, (n, len(self.roots)))
            offset = np.arange(0, flat.size, X.shape[1], dtype=np.intp)[:, None]
        for _ in range(self.depth):
            column = self.feature.take(node)
            xv = flat.take(column if offset is None else column + offset)
            go_right = xv >= self.threshold.take(node)  # False for NaN on either side
            if missing:
                go_right |= np.isnan(xv) & self.default_right.take(node)
            node = self.left.take(node) + go_right
        # base_score is already in the first tree's leaves, so this is XGBoost's float32 sum
        # ((base + leaf_0) + leaf_1) + ... in tree order (cumsum adds sequentially, unlike sum).
        return np.cumsum(self.value.take(node), axis=1, dtype=np.float32)[:, -1]


def parse_base_score(text: Any) -> float | None:
    """``"[9.9E0]"`` (XGBoost 3), ``"9.9E0"`` (XGBoost 2) or a number -> float; None if a vector."""
    parts = [p for p in str(text).strip().strip("[]").split(",") if p.strip()]
    if len(parts) != 1:
        return None
    try:
        return float(parts[0])
    except ValueError:
        return None


def _supported(learner: dict[str, Any]) -> bool:
    params = learner.get("learner_model_param", {})
    booster = learner.get("gradient_booster", {})
    return (
        booster.get("name") == "gbtree"
        and learner.get("objective", {}).get("name") in IDENTITY_OBJECTIVES
        and int(params.get("num_target", 1)) == 1
        and int(params.get("num_class", 0)) == 0
        and all(int(g) == 0 for g in booster.get("model", {}).get("tree_info", []))
    )


def _layout(tree: dict[str, Any], offset: int) -> tuple[list[int], list[int], int] | None:
    """Breadth-first renumbering so that siblings are adjacent: (old ids, new left ids, depth)."""
    lefts, rights = tree["left_children"], tree["right_children"]
    if int(tree["tree_param"].get("size_leaf_vector", 1)) > 1 or any(tree["split_type"]):
        return None
    order, new_left, depth = [0], [], 0
    queue: deque[tuple[int, int]] = deque([(0, 0)])
    while queue:
        old, level = queue.popleft()
        position = offset + len(new_left)
        if lefts[old] < 0:
            new_left.append(position)
            depth = max(depth, level)
        else:
            new_left.append(offset + len(order))
            order += [lefts[old], rights[old]]
            queue += [(lefts[old], level + 1), (rights[old], level + 1)]
    return order, new_left, depth


def _flatten(trees: list[dict[str, Any]], base: float) -> CompiledTrees | None:
    """Concatenate the renumbered trees; fold ``base`` into the first tree's leaves."""
    feature: list[int] = []
    threshold: list[float] = []
    left: list[int] = []
    default_left: list[int] = []
    roots: list[int] = []
    depth = 0
    for tree in trees:
        layout = _layout(tree, len(left))
        if layout is None:
            return None
        order, new_left, tree_depth = layout
        roots.append(len(left))
        depth = max(depth, tree_depth)
        feature += [tree["split_indices"][old] for old in order]
        threshold += [tree["split_conditions"][old] for old in order]
        default_left += [tree["default_left"][old] for old in order]
        left += new_left
    internal = np.asarray(left) != np.arange(len(left))
    # a leaf keeps its value in split_conditions; XGBoost's first step is float32(base + leaf)
    value = np.where(internal, 0.0, np.asarray(threshold, dtype=np.float32)).astype(np.float32)
    first = np.arange(len(left)) < (roots[1] if len(roots) > 1 else len(left))
    value[first & ~internal] += np.float32(base)
    arrays = {
        "feature": np.where(internal, feature, 0).astype(np.intp),
        "threshold": np.where(internal, np.asarray(threshold, np.float32), np.nan).astype(
            np.float32
        ),
        "left": np.asarray(left, dtype=np.intp),
        "default_right": internal & ~np.asarray(default_left, dtype=bool),
        "value": value,
        "roots": np.asarray(roots, dtype=np.intp),
    }
    for array in arrays.values():
        array.flags.writeable = False  # shared by concurrent requests: make that safe by design
    return CompiledTrees(**arrays, depth=depth)


def compile_booster(booster: xgb.Booster) -> CompiledTrees | None:
    """Compile a single-target regression gbtree; None when it uses anything unsupported."""
    learner = json.loads(bytes(booster.save_raw(raw_format="json")))["learner"]
    base = parse_base_score(learner.get("learner_model_param", {}).get("base_score"))
    if base is None or not _supported(learner):
        return None
    trees = learner["gradient_booster"]["model"]["trees"]
    if not trees:
        return None
    try:
        compiled = _flatten(trees, base)
    except (KeyError, IndexError, TypeError, ValueError):  # a layout this code does not know
        return None
    if compiled is None or compiled.feature.max() >= booster.num_features():
        return None
    return compiled
