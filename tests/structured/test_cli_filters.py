"""The command line's channel methods: widths printed, JSON with params, FLOPs, latency and widths, the smaller
network exported; bad arguments answered with one message, never a traceback."""
from __future__ import annotations

import json

import pytest
from faults import fault, run_cli


MOONS = ["--model", "mlp", "--dataset", "moons", "--quiet"]


def test_pfp_prints_widths_and_writes_json_and_files(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SIPP_CACHE_DIR", str(tmp_path / "cache"))
    report = tmp_path / "r.json"
    code, out, err = run_cli(capsys, "prune", *MOONS, "--method", "pfp", "--keep-ratio", "0.5", "--json", str(report),
                             "--export", str(tmp_path / "out"))
    assert code == 0, err
    assert "in before" in out and "out after" in out and "fc1 · Linear 2→64" in out
    d = json.loads(report.read_text())
    assert set(d["latency_ms"]) == {"original", "masked", "pruned"}
    assert set(d["latency_ms"]["pruned"]) == {"batch_1", "batch_64"}
    assert d["params"]["pruned"] < d["params"]["original"] and d["flops"]["pruned"] < d["flops"]["original"]
    # one hidden unit of this 4,482-parameter MLP is about 2.9% of it: the nearest network is returned, with a warning
    assert abs(d["params"]["pruned"] / d["params"]["original"] - 0.5) <= 0.02
    assert d["keep_ratio"] == pytest.approx(d["params"]["pruned"] / d["params"]["original"])
    assert [w["label"] for w in d["widths"]][0] == "fc1 · Linear 2→64"
    assert {"model.onnx", "model.pt2", "state_dict.pt"} <= {p.name for p in (tmp_path / "out").iterdir()}


@fault("prune --method pfp --epsilon 0.5", surface="command line", outcome="clear error")
def test_eps_needs_the_sampled_method(capsys):
    code, _, err = run_cli(capsys, "prune", *MOONS, "--method", "pfp", "--epsilon", "0.5")
    assert code == 2 and "pfp-rand" in err and "fix:" in err


@pytest.mark.parametrize("argv,needle", [
    (["--method", "pfp", "--keep-ratio", "0"], "--keep-ratio must be in (0, 1]"),
    (["--method", "filter-l1", "--keep-ratio", "0.5", "--target", "latency"], "invalid choice: 'latency'"),
])
def test_bad_channel_arguments(capsys, argv, needle):
    code, _, err = run_cli(capsys, "prune", *MOONS, *argv)
    assert code == 2 and needle in err
