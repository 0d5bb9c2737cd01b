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
    "load_dataset": "data", "DataRecord": "data", "DATASETS": "data", "load_npz_dataset": "data",
    "build_model": "models", "MODELS": "models", "compatible_models": "models",
    "load_model": "checkpoints", "load_trained": "checkpoints",
    "train_model": "train", "accuracy": "train", "predict": "train",
    "compute_sensitivities": "sensitivity",
    "sample_size": "bounds", "draw_sample": "bounds", "eps_rand": "bounds", "m_for_eps": "bounds",
    "prune": "pruning", "PruneResult": "pruning",
    "make_plan": "planner", "METHODS": "planner",
    "measure_layer_errors": "measure", "end_to_end": "measure",
    "prepare": "pipeline", "prepare_trained": "pipeline", "evaluate_prune": "pipeline",
    "smp": "smoothness", "nonsmoothness": "smoothness", "make_paths": "smoothness", "compare": "smoothness",
    "segment_paths": "smoothness", "Paths": "smoothness", "Nonsmoothness": "smoothness", "jacobian_norms": "smoothness",
    "sweep": "sweeps", "prune_potential": "sweeps", "prune_retrain": "retrain", "train_isolated": "retrain",
    "RunHistory": "history",
    "layer_infos": "layers", "prunable_layers": "layers", "dense_layers": "layers",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        value = getattr(import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sipp_core' has no attribute {name!r}")
