"""sipp_core: Sensitivity-informed Provable Pruning (Baykal et al.) as a library.

Public names are imported lazily so that `import sipp_core` stays fast and a
notebook pays only for what it uses.

    from sipp_core import load_dataset, load_model, prune
    data = load_dataset("mnist5k")
    model = load_model("lenet300", "mnist5k")
    result = prune(model, data.x_pool[:152], keep_ratio=0.05)
"""
from importlib import import_module

__version__ = "0.1.0"

_NAMES = {
    "load_dataset": "io.data", "DataRecord": "io.data", "DATASETS": "io.data", "load_npz_dataset": "io.npz",
    "dataset_from_arrays": "io.npz",
    "build_model": "zoo.models", "MODELS": "zoo.models", "compatible_models": "zoo.models",
    "load_model": "io.checkpoints", "load_trained": "io.checkpoints",
    "train_model": "zoo.train", "accuracy": "zoo.train", "predict": "zoo.train",
    "compute_sensitivities": "sensitivity.api",
    "sample_size": "plan.bounds", "draw_sample": "plan.bounds", "eps_rand": "plan.bounds", "m_for_eps": "plan.bounds",
    "prune": "plan.pruning", "PruneResult": "plan.pruning",
    "make_plan": "plan.planner", "METHODS": "plan.planner",
    "measure_layer_errors": "plan.measure", "end_to_end": "plan.measure",
    "prepare": "pipeline", "prepare_trained": "pipeline", "evaluate_prune": "pipeline",
    "smp": "smoothness.core", "nonsmoothness": "smoothness.core", "make_paths": "smoothness.core", "compare": "smoothness.core",
    "segment_paths": "smoothness.core", "Paths": "smoothness.core", "Nonsmoothness": "smoothness.core", "jacobian_norms": "smoothness.core",
    "sweep": "jobs.sweeps", "prune_potential": "jobs.sweeps", "prune_retrain": "jobs.retrain", "train_isolated": "jobs.isolation",
    "run_study": "jobs.study", "RunHistory": "jobs.history",
    "layer_infos": "zoo.layers", "prunable_layers": "zoo.layers", "dense_layers": "zoo.layers",
    "channel_sensitivities": "structured.channels",
    "explore": "ui.notebook.explorer", "explore_smoothness": "ui.notebook.smoothness", "tradeoffs": "ui.notebook.tradeoffs",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        where = _NAMES[name]
        # the notebook widgets live in ui (they draw the app's charts): imported by their full name, on first use
        value = getattr(import_module(where) if where.startswith("ui.") else import_module(f".{where}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sipp_core' has no attribute {name!r}")
