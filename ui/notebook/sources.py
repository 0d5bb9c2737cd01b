"""What a notebook may hand to explore(): a zoo name, its own network and data, or a prepared result.

Every form ends as a ``pipeline.Prepared`` (model, data, S, sensitivities). Changing |S| or the seed
draws a new S and recomputes the sensitivities; `Sources` keeps the last few so that going back is free.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

from torch import nn

from sipp_core.errors import BadInput
from sipp_core.io.checkpoints import TrainedModel
from sipp_core.io.data import DataRecord, load_dataset
from sipp_core.io.uploads import check_runs_on
from sipp_core.pipeline import Prepared, Report, prepare, prepare_trained
from sipp_core.zoo.train import accuracy
from ui.settings import DEFAULT_DATASET, DEFAULT_MODEL

KEEP = 4  # prepared results kept per explorer (each holds S and one sensitivity tensor per weight)


def _auto_size(p: Prepared) -> bool:
    """Whether p's |S| is what the formula gives (capped at the S-pool), i.e. it was not set by hand."""
    return p.sample_size == min(p.sample_size_formula, len(p.record.x_pool))


def _trained_from_module(model: nn.Module, data) -> TrainedModel:
    if not isinstance(data, DataRecord):
        raise BadInput(f"explore() got a network ({type(model).__name__}) but data of type {type(data).__name__}",
                       "pass its data set as a DataRecord too: explore(net, sipp_core.load_dataset('mnist5k')) "
                       "or sipp_core.load_npz_dataset(path)")
    own = copy.deepcopy(model).eval()  # never touch the caller's network (its train/eval flag included)
    check_runs_on(own, data, f"your {type(model).__name__}")  # shapes and class count, said before anything runs
    acc = accuracy(own, data.x_test, data.y_test)
    return TrainedModel(own, type(model).__name__, data.name, 0, 0, acc, "notebook", "")


class Sources:
    """The network and data behind one explorer, and its Prepared per (|S| or None for the formula, seed)."""

    def __init__(self, model=None, data=None):
        self._cache: OrderedDict[tuple, Prepared] = OrderedDict()
        self.report: Report | None = None  # a Report handed in: its settings seed the controls
        if isinstance(model, Report):
            self.report, model = model, model.prepared
        if isinstance(model, Prepared):
            if data is not None:
                raise BadInput("explore() got a prepared result and data", "pass the prepared result alone")
            self.trained, self.record = model.trained, model.record
            self._first = model
        elif model is None or isinstance(model, str):
            if data is not None and not isinstance(data, str):
                raise BadInput(f"explore() got the zoo name {model!r} with data of type {type(data).__name__}",
                               "name a data set (e.g. 'mnist5k'), or pass your own nn.Module with a DataRecord")
            self._names = (model or DEFAULT_MODEL, data or DEFAULT_DATASET)
            self.trained = self.record = None
            self._first = None
        elif isinstance(model, nn.Module):
            self.trained = _trained_from_module(model, data)
            self.record = data
            self._first = None
        else:
            raise BadInput(f"explore() cannot use a {type(model).__name__} as its model",
                           "pass a zoo name ('lenet300'), an nn.Module with its DataRecord, or a result of "
                           "sipp_core.prepare / evaluate_prune")

    @property
    def pool_size(self) -> int:
        return len(self.record.x_pool)

    def get(self, sample_size: int | None, seed: int) -> Prepared:
        """The Prepared for this |S| (None: the formula) and seed, computing it when new."""
        if self._first is not None and not self._cache:
            p = self._first
            self._cache[(None if _auto_size(p) else p.sample_size, p.seed)] = p
        key = (None if sample_size is None else int(sample_size), int(seed))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if self.trained is None:
            p = prepare(*self._names, sample_size=key[0], seed=key[1])
            self.trained, self.record = p.trained, p.record
        else:
            p = prepare_trained(self.trained, self.record, sample_size=key[0], seed=key[1],
                                patch_reduction=self._patch())
        self._cache[key] = p
        while len(self._cache) > KEEP:
            self._cache.popitem(last=False)
        return p

    def _patch(self) -> str:
        return self._first.patch_reduction if self._first is not None else "max"

    def first_key(self) -> tuple[int | None, int] | None:
        """(|S| or None, seed) of a prepared result handed in, else None."""
        p = self._first
        return None if p is None else (None if _auto_size(p) else p.sample_size, p.seed)
