"""Fault cases of the command line and the library's public surface: one message, the right exit status.

Exit status 2 for bad arguments or input, 1 for failures; stderr carries
"error: <problem>" and, where there is one, "fix: <fix>"; never a traceback.
Most cases call ``main()`` in this process (fast); a few run the real command.
"""
from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from faults import fault, run_cli

import sipp_core.__main__ as cli
import sipp_core.io.checkpoints as ckpt
import sipp_core.io.outputs as outputs
import sipp_core.jobs.study as study
from sipp_core.io.data import load_dataset
from sipp_core.plan.bounds import draw_sample
from sipp_core.zoo.models import build_model
from sipp_core.zoo.train import train_model

ROOT = Path(__file__).resolve().parents[1]
MOONS = ["--model", "mlp", "--dataset", "moons"]


@fault("prune --seed 99999999999999999999999", surface="command line", outcome="clear error")
def test_overflowing_seed_is_refused(capsys):
    code, _, err = run_cli(capsys, "prune", *MOONS, "--keep-ratio", "0.5", "--seed", "9" * 23)
    assert code == 2 and "--seed" in err and "0.." in err and "Overflow" not in err


@fault("prune --seed -5", surface="command line", outcome="clear error")
def test_negative_seed_is_refused(capsys):
    code, _, err = run_cli(capsys, "prune", *MOONS, "--keep-ratio", "0.5", "--seed", "-5")
    assert code == 2 and "--seed" in err


@fault("draw_sample(seed=-5)", surface="library", outcome="clear error")
def test_draw_sample_refuses_a_negative_seed():
    with pytest.raises(ValueError, match="seed"):
        draw_sample(100, 10, seed=-5)
    with pytest.raises(ValueError, match="seed"):
        draw_sample(100, 10, seed=2**64)
    assert torch.equal(draw_sample(100, 10, seed=2**63 - 1), draw_sample(100, 10, seed=2**63 - 1))


@fault("prune --device tpu", surface="command line", outcome="clear error")
def test_unknown_device_is_refused(capsys):
    code, _, err = run_cli(capsys, "prune", *MOONS, "--keep-ratio", "0.5", "--device", "tpu")
    assert code == 2 and "--device" in err and "'tpu'" in err


@fault("prune --device cuda without a GPU", surface="command line", outcome="clear error")
def test_cuda_without_gpu_is_refused(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: --device cuda is honoured for training")
    code, _, err = run_cli(capsys, "prune", *MOONS, "--keep-ratio", "0.5", "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in err


@fault("prune on an offline torchvision data set", surface="command line", outcome="clear error")
def test_offline_dataset_is_one_message(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SIPP_DATA_DIR", str(tmp_path / "empty"))
    code, _, err = run_cli(capsys, "prune", "--model", "lenet300", "--dataset", "mnist", "--keep-ratio", "0.5")
    assert code == 1
    assert err.startswith("error: ") and "\nfix: " in err and "mnist5k" in err


@fault("sweep on an offline torchvision data set", surface="command line", outcome="clear error")
def test_offline_dataset_sweep_is_one_message(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SIPP_DATA_DIR", str(tmp_path / "empty"))
    code, _, err = run_cli(capsys, "sweep", "--model", "lenet300", "--dataset", "fashion-mnist", "--quiet")
    assert code == 1 and "fix: " in err


@fault("prune with a tampered shipped checkpoint", surface="command line", outcome="recovered")
def test_tampered_shipped_checkpoint_is_refused_and_rebuilt(capsys, monkeypatch, tmp_path, tiny_moons_env):
    assets = tmp_path / "assets"
    assets.mkdir()
    name = ckpt.checkpoint_name("mlp", "moons", 60, 0)
    (assets / name).write_bytes((tiny_moons_env / "checkpoints" / name).read_bytes())
    ckpt.write_manifest(assets)
    raw = bytearray((assets / name).read_bytes())
    raw[-100] ^= 0x01  # one flipped bit inside the tensor data
    (assets / name).write_bytes(bytes(raw))
    monkeypatch.setattr(ckpt, "ASSETS_DIR", assets)
    code, out, err = run_cli(capsys, "prune", *MOONS, "--keep-ratio", "0.5", "--quiet")
    assert code == 0 and "warning: " in err and name in err and "git checkout" in err
    assert "accuracy" in out


@fault("prune with a read-only checkpoint cache", surface="command line", outcome="recovered")
def test_read_only_cache_prunes_and_warns(capsys, monkeypatch, tmp_path):
    # root ignores chmod, so the read-only folder is simulated where the file would be written
    monkeypatch.setenv("SIPP_CACHE_DIR", str(tmp_path / "ro"))
    monkeypatch.setattr(ckpt, "DEFAULT_EPOCHS", {**ckpt.DEFAULT_EPOCHS, "mlp": 1})

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(ckpt.tempfile, "mkstemp", refuse)
    code, out, err = run_cli(capsys, "prune", *MOONS, "--keep-ratio", "0.5", "--quiet")
    assert code == 0, err
    assert "was not saved to the checkpoint cache" in err and "SIPP_CACHE_DIR" in err
    assert "accuracy" in out


@fault("prune --json into a folder that does not exist", surface="command line", outcome="clear error")
def test_report_into_a_missing_folder_is_refused_before_any_work(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "prepare", _no_work)
    target = tmp_path / "no-such-folder" / "report.json"
    code, _, err = run_cli(capsys, "prune", *MOONS, "--keep-ratio", "0.5", "--quiet", "--json", str(target))
    assert code == 2 and "no-such-folder does not exist" in err and "\nfix: create it first (mkdir -p " in err


@fault("prune --json into a read-only folder", surface="command line", outcome="clear error")
def test_report_into_a_read_only_folder_is_refused_before_any_work(capsys, monkeypatch, tmp_path):
    # root ignores chmod: the folder's answer to "may I write here?" is simulated
    monkeypatch.setattr(cli, "prepare", _no_work)
    monkeypatch.setattr(outputs.os, "access", lambda path, mode: Path(path) != tmp_path)
    code, _, err = run_cli(capsys, "prune", *MOONS, "--keep-ratio", "0.5", "--json", str(tmp_path / "r.json"))
    assert code == 1 and "cannot be written to (read-only" in err and "\nfix: give --json a path in a folder" in err


@fault("prune --export onto a file, --json onto a folder", surface="command line", outcome="clear error")
def test_export_onto_a_file_and_report_onto_a_folder_are_refused(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "prepare", _no_work)
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli(capsys, "prune", *MOONS, "--keep-ratio", "0.5", "--export", str(tmp_path / "afile"))
    assert code == 2 and "is a file; a folder is needed" in err and "\nfix: " in err
    code, _, err = run_cli(capsys, "prune", *MOONS, "--keep-ratio", "0.5", "--json", str(tmp_path))
    assert code == 2 and "is a folder; a file name is needed" in err


@fault("study --out onto a file", surface="command line", outcome="clear error")
def test_study_output_is_checked_before_the_study_runs(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(study, "run_study", _no_work)
    config = tmp_path / "s.toml"
    config.write_text('name = "s"\nmethods = ["wt"]\nratios = [0.5]\n[[networks]]\nmodel = "mlp"\ndataset = "moons"\n')
    (tmp_path / "out").write_text("x")
    code, _, err = run_cli(capsys, "study", str(config), "--out", str(tmp_path / "out"))
    assert code == 2 and "--out" in err and "is a file" in err


def _no_work(*args, **kwargs):
    raise AssertionError("the output path should have been refused before any work")


@fault("prune --keep-ratio 0", surface="command line", outcome="clear error")
def test_zero_keep_ratio_is_refused(capsys):
    code, _, err = run_cli(capsys, "prune", *MOONS, "--keep-ratio", "0")
    assert code == 2 and "--keep-ratio must be in (0, 1]" in err


@fault("prune --epsilon 0", surface="command line", outcome="clear error")
def test_zero_epsilon_is_refused(capsys):
    code, _, err = run_cli(capsys, "prune", *MOONS, "--epsilon", "0")
    assert code == 2 and "epsilon" in err


@fault("prune --method magic", surface="command line", outcome="clear error")
def test_unknown_method_is_refused(capsys):
    code, _, err = run_cli(capsys, "prune", *MOONS, "--method", "magic", "--keep-ratio", "0.5")
    assert code == 2 and "magic" in err


@fault("prune --sample-size larger than the S-pool", surface="command line", outcome="clear error")
def test_sample_size_beyond_pool_is_refused(capsys, tiny_moons_env):
    code, _, err = run_cli(capsys, "prune", *MOONS, "--keep-ratio", "0.5", "--sample-size", "100000", "--quiet")
    assert code == 2 and "--sample-size must be an integer from 1 to 200" in err


@fault("prune a model that does not fit the data", surface="command line", outcome="clear error")
def test_model_that_does_not_fit_is_refused(capsys):
    code, _, err = run_cli(capsys, "prune", "--model", "resnet20", "--dataset", "moons", "--keep-ratio", "0.5")
    assert code == 2 and "\nfix: choose one of the models that fit this data set: lenet300, mlp" in err


@fault("sweep --ratios 2:1:x", surface="command line", outcome="clear error")
def test_bad_ratio_grid_is_refused(capsys):
    code, _, err = run_cli(capsys, "sweep", *MOONS, "--ratios", "2:1:x", "--quiet")
    assert code == 2 and "error: " in err


@fault("an unexpected error inside a command", surface="command line", outcome="clear error")
def test_unexpected_error_is_one_line_with_how_to_report(capsys, monkeypatch):
    import sipp_core.__main__ as cli

    def broken(*args, **kwargs):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(cli, "prepare", broken)
    code, _, err = run_cli(capsys, "prune", *MOONS, "--keep-ratio", "0.5")
    assert code == 1 and "something inside broke" in err and "SIPP_DEBUG=1" in err


@fault("prune announces a long training run first", surface="command line", outcome="recovered")
def test_training_is_announced_with_an_estimate(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SIPP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(ckpt, "DEFAULT_EPOCHS", {**ckpt.DEFAULT_EPOCHS, "mlp": 2})
    code, out, err = run_cli(capsys, "prune", *MOONS, "--keep-ratio", "0.5")
    assert code == 0
    first = err.splitlines()[0]
    assert first.startswith("prepare: training 2 epochs x ") and "about " in first and "timed from 3 steps" in first


def test_the_estimate_does_not_change_training():
    rec = load_dataset("moons")
    a, acc_a = train_model(build_model("mlp", rec.input_shape, rec.num_classes, seed=0), rec, epochs=1, device="cpu")
    seen = []
    b, acc_b = train_model(build_model("mlp", rec.input_shape, rec.num_classes, seed=0), rec, epochs=1, device="cpu",
                           progress=lambda f, m: seen.append(m))
    assert "about" in seen[0] and acc_a == acc_b
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


@fault("SIPP_CONV_BOUNDS=fast", surface="command line", outcome="clear error")
def test_bad_bounds_setting_is_refused(capsys, monkeypatch, tiny_moons_env):
    import sipp_core.sensitivity.api as sens

    monkeypatch.setattr(sens, "_BF16_CPU", None)
    monkeypatch.setenv(sens.BOUNDS_ENV, "fast")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3))
    with pytest.raises(ValueError, match="SIPP_CONV_BOUNDS"):
        sens.compute_sensitivities(model, torch.randn(64, 3, 40, 40).relu())
    monkeypatch.setattr(sens, "_BF16_CPU", None)


@fault("public names after importing submodules first", surface="library", outcome="recovered")
def test_public_names_do_not_depend_on_import_order():
    code = ("from sipp_core.pipeline import prepare\nimport sipp_core.jobs.retrain\n"
            "from sipp_core import prune, sweep, smp, nonsmoothness, load_model\n"
            "import inspect\n"
            "assert all(inspect.isfunction(f) for f in (prune, sweep, smp, nonsmoothness, load_model)), "
            "[type(f) for f in (prune, sweep, smp, nonsmoothness, load_model)]\n"
            "import sipp_core\nassert inspect.isfunction(sipp_core.prune) and inspect.isfunction(sipp_core.sweep)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@fault("the real command: bad argument and offline data", surface="command line", outcome="clear error")
def test_real_command_exit_statuses(tmp_path):
    env = {"SIPP_DATA_DIR": str(tmp_path / "empty"), "PATH": str(Path(sys.executable).parent)}
    bad = subprocess.run([sys.executable, "-m", "sipp_core", "prune", *MOONS, "--keep-ratio", "0.5", "--seed", "x"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    offline = subprocess.run([sys.executable, "-m", "sipp_core", "prune", "--model", "lenet300", "--dataset", "mnist",
                              "--keep-ratio", "0.5"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert offline.returncode == 1 and "Traceback" not in offline.stderr and "fix: " in offline.stderr


@fault("engine messages on the command line", surface="command line", outcome="clear error")
def test_messages_name_the_command_lines_flags(capsys, tiny_moons_env):
    code, _, err = run_cli(capsys, "prune", "--model", "lenet5", "--method", "filter-l1", "--epsilon", "0.5")
    assert code == 2 and "\nfix: use --method pfp-rand, or give --keep-ratio" in err
    assert "method=" not in err and "keep_ratio" not in err
    code, _, err = run_cli(capsys, "prune", *MOONS, "--keep-ratio", "0.5", "--sample-size", "100000", "--quiet")
    assert code == 2 and "--sample-size must be" in err and "leave out --sample-size" in err and "app" not in err


def test_cli_words_translate_arguments_and_uploads():
    assert cli.cli_words("pass e.g. keep_ratio=0.3, or sample_size=100") == (
        "pass e.g. --keep-ratio 0.3, or --sample-size 100")
    assert cli.cli_words("load it again with download=True, or point SIPP_DATA_DIR or data_dir at it") == (
        "run the command again, or point SIPP_DATA_DIR at it")
    assert cli.cli_words("upload it as a state_dict and choose its architecture") == (
        "give it with --weights and its --model")
    assert cli.cli_words("the uploaded mlp cannot take") == "the mlp cannot take"


def test_an_npz_whose_s_pool_is_below_the_formula_is_said(capsys, tmp_path):
    """300 training points give an S-pool of 30 (10%): |S| = 30 is used, and a warning line says it is below the
    formula (the library's prune() warns; the command line, which prunes through the pipeline, said nothing)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((360, 2)).astype(np.float32), rng.integers(0, 2, 360)
    np.savez(tmp_path / "d.npz", x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    torch.save(build_model("mlp", (2,), 2, seed=0).state_dict(), tmp_path / "w.pt")
    code, out, err = run_cli(capsys, "prune", "--npz", str(tmp_path / "d.npz"), "--weights", str(tmp_path / "w.pt"),
                             "--model", "mlp", "--keep-ratio", "0.5", "--quiet")
    assert code == 0 and "|S| = 30 (formula" in out
    assert "warning: |S| = 30 is below the" in err and "the S-pool holds 30 points" in err


def test_weights_without_model_find_their_architecture(capsys, tmp_path):
    """--model was required with --weights; without it, the zoo architecture the weights fit is found and named."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((600, 2)).astype(np.float32), rng.integers(0, 2, 600)
    np.savez(tmp_path / "d.npz", x_train=x[:500], y_train=y[:500], x_test=x[500:], y_test=y[500:])
    torch.save(build_model("mlp", (2,), 2, widths=(12, 6), seed=0).state_dict(), tmp_path / "w.pt")
    code, out, err = run_cli(capsys, "prune", "--npz", str(tmp_path / "d.npz"), "--weights", str(tmp_path / "w.pt"),
                             "--keep-ratio", "0.5", "--quiet")
    assert code == 0 and "mlp" in out, (out, err)


@fault("prune --npz with --dataset, or --program with --model", surface="command line", outcome="clear error")
def test_flags_that_would_be_ignored_are_refused(capsys, tmp_path):
    data, prog = tmp_path / "d.npz", tmp_path / "p.pt2"
    code, _, err = run_cli(capsys, "prune", "--npz", str(data), "--weights", str(prog), "--model", "mlp",
                           "--dataset", "digits", "--keep-ratio", "0.5")
    assert code == 2 and "--dataset names a built-in data set, and --npz is your own data" in err
    assert "fix: leave out --dataset" in err
    code, _, err = run_cli(capsys, "prune", "--npz", str(data), "--program", str(prog), "--model", "lenet300",
                           "--keep-ratio", "0.5")
    assert code == 2 and "--program brings its own network" in err and "fix: leave out --model" in err


@fault("train --out a folder, or a path that cannot be written", surface="command line", outcome="clear error")
def test_train_checks_its_output_before_training(capsys, monkeypatch, tmp_path):
    trained = []
    monkeypatch.setattr(cli, "train_model", lambda *a, **k: trained.append(1))
    code, _, err = run_cli(capsys, "train", "--model", "mlp", "--dataset", "moons", "--out", str(tmp_path))
    assert code == 2 and "--out" in err and "fix:" in err and not trained  # a folder: said before any training
    code, _, err = run_cli(capsys, "train", "--model", "mlp", "--dataset", "moons", "--out",
                           str(tmp_path / "nodir" / "x.pt"))
    assert code == 2 and "nodir" in err and not trained


@fault("train into a full disk (torch's own write error)", surface="command line", outcome="clear error")
def test_train_onto_a_full_disk_says_so(capsys, monkeypatch, tmp_path):
    import sipp_core.io.checkpoints as checkpoints

    def save_half(obj, fh, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1408 vs 1302")

    monkeypatch.setattr(checkpoints.torch, "save", save_half)
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda p: type("U", (), {"free": 1024})())
    monkeypatch.setattr(cli, "DEFAULT_EPOCHS", {"mlp": 1})
    code, _, err = run_cli(capsys, "train", "--model", "mlp", "--dataset", "moons", "--out", str(tmp_path / "x.pt"))
    assert code == 1 and "could not write the checkpoint" in err and "the disk is full" in err
    assert "this is a bug" not in err and "Traceback" not in err


@fault("prune --weights trained for inputs of another shape", surface="command line", outcome="clear error")
def test_weights_for_other_data_say_which_data_they_take(capsys, tmp_path):
    """LeNet-300-100 weights made for 28x28 digits, given with 8x8 digits: the fix is other data, said in the
    command line's flags (the app's fix names its built-in data sets, which --weights does not take)."""
    weights = tmp_path / "w.pt"
    torch.save(build_model("lenet300", (1, 28, 28), 10, seed=0).state_dict(), weights)
    digits = load_dataset("digits")
    data = tmp_path / "d.npz"
    np.savez(data, x_train=digits.x_train.flatten(1).numpy(), y_train=digits.y_train.numpy(),
             x_test=digits.x_test.flatten(1).numpy(), y_test=digits.y_test.numpy())
    code, _, err = run_cli(capsys, "prune", "--npz", str(data), "--weights", str(weights), "--model", "lenet300",
                           "--keep-ratio", "0.5", "--quiet")
    assert code == 2 and "input size: the file's first layer fc1.weight takes 784 inputs per unit" in err
    assert err.rstrip().endswith("fix: these are 'lenet300' weights for inputs of shape (1, 28, 28) and 10 classes, "
                                 "not for 'd.npz' (inputs (64,), 10 classes): give --npz data of that shape")


@fault("prune --npz of random bytes", surface="command line", outcome="clear error")
def test_unreadable_npz_says_the_fix_and_no_unsafe_advice(capsys, tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(bytes(range(256)) * 8)
    code, _, err = run_cli(capsys, "prune", "--npz", str(bad), "--program", str(bad), "--keep-ratio", "0.5")
    assert code == 2 and "not an .npz archive: an .npz is a zip file" in err and "\nfix: save it with np.savez(" in err
    assert "allow_pickle" not in err and "trust" not in err and "pickled" not in err


@fault("prune --npz larger than the command line's limit", surface="command line", outcome="clear error")
def test_npz_limit_is_the_command_lines_own(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "NPZ_MAX_BYTES", 1000)  # the real one, 512 MiB, is above the app's 200 MiB uploads
    big = tmp_path / "x.npz"
    big.write_bytes(b"PK" + bytes(2000))
    code, _, err = run_cli(capsys, "prune", "--npz", str(big), "--program", str(big), "--keep-ratio", "0.5")
    assert code == 2 and "larger than the limit of 1,000 bytes" in err and "\nfix: use fewer points" in err
    assert "weights" not in err


@fault("train --epochs 0", surface="command line", outcome="clear error")
def test_zero_epochs_is_refused(capsys):
    code, _, err = run_cli(capsys, "train", "--model", "mlp", "--dataset", "moons", "--epochs", "0")
    assert code == 2 and "--epochs" in err and "at least 1" in err


def test_train_defaults_to_the_checkpoint_prune_reads(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "DEFAULT_EPOCHS", {"mlp": 2})
    code, out, _ = run_cli(capsys, "train", "--model", "mlp", "--dataset", "moons", "--out", str(tmp_path / "a.pt"))
    assert code == 0 and "note:" not in out
    assert torch.load(tmp_path / "a.pt", weights_only=True)["epochs"] == 2
    code, out, _ = run_cli(capsys, "train", "--model", "mlp", "--dataset", "moons", "--epochs", "1",
                           "--out", str(tmp_path / "b.pt"))
    # written elsewhere: nothing reads it but its user's own code
    assert code == 0 and "note: prune, sweep, study and the app use the 2-epoch, seed-0 checkpoint of mlp in " in out
    assert "load_trained" not in out


def test_prune_and_sweep_take_the_checkpoint_train_made(capsys, monkeypatch, tmp_path):
    """train --epochs 1 writes a checkpoint into the cache; prune --epochs 1 and sweep --epochs 1 use it (no
    training), and the report says which; without --epochs they use the model's own count."""
    monkeypatch.setenv("SIPP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cli, "DEFAULT_EPOCHS", {"mlp": 2})
    code, out, _ = run_cli(capsys, "train", "--model", "mlp", "--dataset", "moons", "--epochs", "1")
    assert code == 0 and "note: prune and sweep use this checkpoint with --epochs 1; study and the app use the " \
        "2-epoch one" in out
    trained = {p.name for p in (tmp_path / "cache" / "checkpoints").iterdir()}
    code, _, err = run_cli(capsys, "prune", *MOONS, "--epochs", "1", "--keep-ratio", "0.5",
                           "--json", str(tmp_path / "r.json"))
    assert code == 0 and "training" not in err.lower()
    assert json.loads((tmp_path / "r.json").read_text())["model_epochs"] == 1
    code, _, _ = run_cli(capsys, "prune", *MOONS, "--epochs", "1", "--method", "filter-l1", "--keep-ratio", "0.5",
                         "--json", str(tmp_path / "f.json"), "--quiet")
    assert code == 0 and json.loads((tmp_path / "f.json").read_text())["model_epochs"] == 1  # channel methods too
    code, out, err = run_cli(capsys, "sweep", *MOONS, "--epochs", "1", "--ratios", "0.5", "--methods", "wt",
                             "--json", str(tmp_path / "s.json"))
    assert code == 0 and "training" not in err.lower()
    assert json.loads((tmp_path / "s.json").read_text())["settings"]["epochs"] == 1
    assert {p.name for p in (tmp_path / "cache" / "checkpoints").iterdir()} == trained  # nothing trained
    code, out, _ = run_cli(capsys, "sweep", *MOONS, "--ratios", "0.5", "--methods", "wt", "--quiet")
    assert code == 0 and "(from the cache)" not in out  # the 2-epoch network: another sweep, not the cached one
    code, _, err = run_cli(capsys, "prune", "--npz", str(tmp_path / "d.npz"), "--program", str(tmp_path / "p.pt2"),
                           "--epochs", "1", "--keep-ratio", "0.5")
    assert code == 2 and "--epochs picks one of the zoo's checkpoints" in err and "fix: leave out --epochs" in err


def test_a_failure_rate_is_zero_only_when_nothing_failed():
    assert [cli._rate(v) for v in (0.0, 6.67e-6, 0.0126, float("nan"))] == ["0%", "<0.01%", "1.26%", "-"]
