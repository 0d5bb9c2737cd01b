"""The whole pipeline in two calls, shared by the command line, the app and notebooks.

    prepared = prepare("lenet300", "mnist5k")            # model, data, S, sensitivities (costly)
    report = evaluate_prune(prepared, keep_ratio=0.05)   # plan, prune, measure (cheap)

Cost shapes the split: sensitivities depend on (model, data, |S|, seed, patch
reduction) only; everything that depends on eps / delta / keep ratio / method
is in the second call.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .io.checkpoints import TrainedModel, load_trained
from .io.data import DataRecord, load_dataset
from .options import DELTA_S
from .plan.bounds import draw_sample
from .plan.bounds import sample_size as sample_size_formula
from .plan.measure import EndToEnd, LayerError, Reference, end_to_end, measure_layer_errors, reference
from .plan.pruning import PruneResult, prune
from .sensitivity.api import compute_sensitivities
from .zoo.layers import LayerInfo, layer_infos
from .zoo.train import predict


@dataclass(frozen=True, eq=False)
class Prepared:
    trained: TrainedModel
    record: DataRecord
    s_index: torch.Tensor  # indices of S in the S-pool split
    s_x: torch.Tensor
    s_y: torch.Tensor
    sample_size: int
    sample_size_formula: int
    seed: int
    patch_reduction: str
    sensitivities: dict[str, torch.Tensor]
    infos: dict[str, LayerInfo]
    heldout_x: torch.Tensor  # held-out test points for layer-local error
    test_logits: torch.Tensor  # the original model's logits on the test split
    timings_s: dict
    # The original network's side of the layer-error measurement on S ("s") and the held-out points ("heldout"),
    # which no pruning changes (measure.reference): absent for networks too large to keep it
    references: dict[str, Reference] = field(default_factory=dict)

    @property
    def model(self):
        return self.trained.model


def prepare(
    model: str,
    dataset: str,
    *,
    sample_size: int | None = None,
    seed: int = 0,
    patch_reduction: str = "max",
    heldout: int = 500,
    device: str | None = "cpu",
    progress=None,
    epochs: int | None = None,
) -> Prepared:
    """Load (or train) a zoo model, draw S from the S-pool and compute sensitivities. epochs: which checkpoint
    (default: the model's own count, zoo.train.DEFAULT_EPOCHS)."""
    t0 = time.perf_counter()
    record = load_dataset(dataset)
    trained = load_trained(model, dataset, epochs=epochs, progress=progress, device=device)
    load_s = time.perf_counter() - t0
    return prepare_trained(trained, record, sample_size=sample_size, seed=seed, patch_reduction=patch_reduction,
                           heldout=heldout, progress=progress, load_s=load_s)


def prepare_trained(
    trained: TrainedModel,
    record: DataRecord,
    *,
    sample_size: int | None = None,
    seed: int = 0,
    patch_reduction: str = "max",
    heldout: int = 500,
    progress=None,
    load_s: float = 0.0,
) -> Prepared:
    """prepare() for a model already in hand (an upload, a notebook's own network)."""
    timings = {"load": load_s}
    net = trained.model
    formula = sample_size_formula(net, record.input_shape, DELTA_S)
    n_pool = len(record.x_pool)
    size = formula if sample_size is None else int(sample_size)
    if sample_size is None and size > n_pool:
        size = n_pool  # the formula can ask for more than a small pool holds: use it all
    idx = draw_sample(n_pool, size, seed)  # raises ValueError naming sample_size when out of range
    s_x, s_y = record.x_pool[idx], record.y_pool[idx]
    t1 = time.perf_counter()
    sens = compute_sensitivities(net, s_x, patch_reduction=patch_reduction, progress=progress)
    timings["sensitivity"] = time.perf_counter() - t1
    gen = torch.Generator().manual_seed(seed + 1)
    h_idx = torch.randperm(len(record.x_test), generator=gen)[: min(heldout, len(record.x_test))]
    heldout_x = record.x_test[h_idx]
    infos = layer_infos(net, record.input_shape)
    refs = {k: reference(net, list(infos), x) for k, x in (("s", s_x), ("heldout", heldout_x))}
    return Prepared(
        trained=trained, record=record, s_index=idx, s_x=s_x, s_y=s_y, sample_size=size,
        sample_size_formula=formula, seed=seed, patch_reduction=patch_reduction, sensitivities=sens,
        infos=infos, heldout_x=heldout_x, test_logits=predict(net, record.x_test), timings_s=timings,
        references={k: r for k, r in refs.items() if r is not None},
    )


@dataclass(frozen=True, eq=False)
class Report:
    prepared: Prepared
    result: PruneResult
    errors_s: dict[str, LayerError]
    errors_heldout: dict[str, LayerError]
    end_to_end: EndToEnd
    timings_s: dict

    def layer_rows(self) -> list[dict]:
        infos = self.prepared.infos
        renamed = any(i.file_name for i in infos.values())  # a ResNet upload saved under other names: the file's too
        rows = []
        for l in self.result.layers:
            es, eh = self.errors_s[l.name], self.errors_heldout[l.name]
            rows.append(dict(
                name=l.name, label=infos[l.name].label,
                **({"file_name": infos[l.name].file_name or l.name} if renamed else {}),
                kind=l.kind, kept=l.kept, total=l.total, density=l.density,
                bound=l.bound, bound_mean=l.bound_mean,
                measured_max_s=es.max, measured_mean_s=es.mean, measured_p95_s=es.p95,
                measured_max_heldout=eh.max, measured_mean_heldout=eh.mean, measured_p95_heldout=eh.p95,
                failure_rate_s=es.failure_rate, failure_rate=eh.failure_rate,
                rows_sampled=l.rows_sampled, rows_deterministic=l.rows_deterministic,
            ))
        return rows

    def to_dict(self) -> dict:
        p, r, e = self.prepared, self.result, self.end_to_end
        return dict(
            model=p.trained.name, dataset=p.record.name, preprocessing=p.record.preprocessing,
            # the zoo checkpoint's training epochs (None for a network brought by its user: 0 epochs here)
            model_epochs=p.trained.epochs or None,
            method=r.settings["method"],
            keep_ratio=r.keep_ratio, keep_ratio_requested=r.settings["keep_ratio"],
            epsilon=r.settings["epsilon"], delta=r.settings["delta"], seed=r.settings["seed"],
            sample_size=p.sample_size, sample_size_formula=p.sample_size_formula,
            patch_reduction=p.patch_reduction, allocation=r.settings["allocation"],
            kept=r.kept, total=r.total, params_kept=r.params_kept, params_total=r.params_total,
            accuracy_before=e.accuracy_before, accuracy_after=e.accuracy_after,
            agreement=e.agreement, logits_rel_error=e.logits_rel_error,
            layers=self.layer_rows(), dense_layers=[dict(name=n, reason=why) for n, why in r.dense],
            timings_s=self.timings_s,
        )


def evaluate_prune(
    prepared: Prepared,
    *,
    method: str = "sipp-hybrid",
    keep_ratio: float | None = None,
    epsilon: float | None = None,
    delta: float = 1e-16,
    seed: int = 0,
    allocation: str = "global",
    c_prime: float = 3.0,
) -> Report:
    """Prune with cached sensitivities, then measure: layer errors on S and held-out, end to end on test."""
    net = prepared.model
    result = prune(
        net, prepared.s_x, method=method, keep_ratio=keep_ratio, epsilon=epsilon, delta=delta, seed=seed,
        sensitivities=prepared.sensitivities, patch_reduction=prepared.patch_reduction,
        labels=prepared.s_y, allocation=allocation, c_prime=c_prime, warn_small_s=False,
    )
    t0 = time.perf_counter()
    rec = prepared.record
    e2e = end_to_end(net, result.model, rec.x_test, rec.y_test, before_logits=prepared.test_logits)
    refs = prepared.references
    errors_s = measure_layer_errors(net, result.plans, prepared.s_x, ref=refs.get("s"))
    errors_h = measure_layer_errors(net, result.plans, prepared.heldout_x, ref=refs.get("heldout"))
    timings = dict(
        sensitivity=prepared.timings_s["sensitivity"], prune=result.timings_s["prune"],
        evaluate=time.perf_counter() - t0,
    )
    return Report(prepared, result, errors_s, errors_h, e2e, timings)
