"""The study command: its TOML file checked key by key, tidy rows and mean ± std over seeds, the CLI, and
the shipped MNIST config (read, not run: it takes minutes)."""
import math
from pathlib import Path

import pandas as pd
import pytest

from sipp_core.errors import BadInput
from sipp_core.jobs.study import config_from_dict, load_config, run_study

ROOT = Path(__file__).resolve().parents[2]

TINY = dict(name="tiny", methods=["sipp-det", "wt"], ratios=[0.5, 0.2], seeds=2, sample_size=30,
            networks=[dict(model="mlp", dataset="moons")])


def test_shipped_mnist_config_is_the_papers_setting():
    c = load_config(ROOT / "studies" / "sipp_mnist.toml")
    assert [m for m, _, _ in c.networks] == ["lenet300", "lenet5"]
    assert all(d == "mnist" and f == "mnist5k" for _, d, f in c.networks)
    assert set(c.methods) == {"sipp-det", "sipp-rand", "sipp-hybrid", "wt", "snip"}
    assert len(c.seeds) >= 3 and len(c.ratios) >= 5 and c.retrain and c.protocol_notes() == []


@pytest.mark.parametrize("change, match", [
    (dict(methds=["wt"]), "unknown key 'methds'"),
    (dict(methods=["wt", "magic"]), "unknown method 'magic'"),
    (dict(ratios=[0.5, 1.5]), "keep ratios must lie"),
    (dict(networks=[]), r"no \[\[networks\]\]"),
    (dict(networks=[dict(model="lenet9")]), "unknown model 'lenet9'"),
    (dict(retrain=dict(epochs=0)), "epochs must be a positive integer"),
    (dict(retrain=dict(epoch=2)), "unknown key 'epoch'"),
    (dict(sample_size=-3), "sample_size"),
    (dict(name="../../etc/x"), "name must be a plain name"),  # the output folder is '<name>-results'
    (dict(name="/tmp/x"), "name must be a plain name"),
])
def test_config_errors_name_the_key_and_fix(change, match):
    with pytest.raises(BadInput, match=match) as err:
        config_from_dict(TINY | change, source="x.toml")
    assert err.value.fix and str(err.value).startswith("x.toml")


@pytest.mark.parametrize("change, problem, fix", [
    (dict(seeds="12"), "seeds must be a count or a list of whole numbers; got '12'", "seeds = [0, 1, 7]"),
    (dict(seeds=[1.7, 2.2]), "seeds must be whole numbers; got 1.7", "seeds = 3"),
    (dict(seeds=[True, False]), "seeds must be whole numbers; got True", "seeds = 3"),
    (dict(seeds=1000), "at most 100 seeds", "seeds = 3"),
    (dict(ratios=[True]), "keep ratios must be numbers; got True", "ratios = [0.5, 0.1, 0.02]"),
    (dict(ratios=[0.5, "abc"]), "keep ratios must be numbers; got 'abc'", "ratios = [0.5, 0.1, 0.02]"),
    (dict(ratios="0.5:0.01:1"), "N = 1 is the single keep ratio 0.5", "give N of at least 2"),
    (dict(methods=[]), "no method given", 'methods = ["sipp-hybrid", "wt"]'),
])
def test_a_bad_value_is_refused_not_guessed_with_the_fix_in_the_files_words(change, problem, fix):
    """Text that Python would iterate ("12": seeds 1 and 2), fractions it would truncate, booleans it would count
    as 1: refused, each with one fix written as the file writes it."""
    with pytest.raises(BadInput) as err:
        config_from_dict(TINY | change, source="x.toml")
    assert problem in err.value.problem and fix in err.value.fix and "Fix" not in err.value.problem


def test_one_number_is_one_keep_ratio():
    assert config_from_dict(TINY | dict(ratios=0.5), source="x.toml").ratios == (0.5,)


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(BadInput, match="cannot be read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = sipp\n")
    with pytest.raises(BadInput, match="not valid TOML"):
        load_config(bad)


def test_prune_only_study_rows_and_summary(tiny_moons_env):
    res = run_study(config_from_dict(TINY), executor="in-process")
    rows = res.rows
    assert len(rows) == 2 * 2 * 2 and not rows["retrained"].any()
    assert {"network", "dataset", "method", "seed", "keep_ratio_requested", "accuracy"} <= set(rows.columns)
    s = res.summary.set_index(["method", "keep_ratio_requested"])
    g = rows[(rows.method == "wt") & (rows.keep_ratio_requested == 0.2)]["accuracy"]
    assert s.loc[("wt", 0.2), "accuracy_mean"] == pytest.approx(g.mean())
    assert s.loc[("wt", 0.2), "accuracy_std"] == pytest.approx(g.std(ddof=1)) and s["seeds"].eq(2).all()
    assert any("at least 3" in n for n in res.notes) and any("at least 5" in n for n in res.notes)


def test_cli_writes_tidy_csv_and_summary(tiny_moons_env, tmp_path, capsys):
    from sipp_core.__main__ import main

    cfg = tmp_path / "tiny.toml"
    cfg.write_text('name = "tiny"\nmethods = ["sipp-det", "random"]\nratios = [0.5, 0.2]\nseeds = 2\n'
                   'sample_size = 30\n[[networks]]\nmodel = "mlp"\ndataset = "moons"\n[retrain]\nepochs = 1\n')
    assert main(["study", str(cfg), "--quiet", "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "prune-retrain" in text and "±" in text and "rows.csv" in text
    rows = pd.read_csv(tmp_path / "out" / "rows.csv")
    assert len(rows) == 8 and rows["retrained"].all()
    assert ((rows["accuracy"] >= 0) & (rows["accuracy"] <= 1)).all()
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert len(summary) == 4 and not summary["accuracy_std"].isna().any()
    assert main(["study", str(tmp_path / "nope.toml")]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_missing_full_data_falls_back(tiny_moons_env, monkeypatch, tmp_path):
    """A network asking for full MNIST runs on its fallback when the files are not on disk, and says so."""
    monkeypatch.setenv("SIPP_DATA_HOME", str(tmp_path))  # an empty data folder: MNIST is not there
    c = config_from_dict(TINY | dict(networks=[dict(model="mlp", dataset="mnist", fallback="moons")]))
    res = run_study(c)
    assert set(res.rows["dataset"]) == {"moons"} and any("mnist is not on disk" in n for n in res.notes)
    assert not math.isnan(res.rows["accuracy"].iloc[0])


def test_interrupted_study_resumes_from_finished_cascades(tiny_moons_env):
    c = config_from_dict(TINY | dict(seeds=[7, 8], retrain=dict(epochs=1)))  # seeds no other test runs
    whole = run_study(c, cache=False)
    finished = []

    def progress(f, m):
        finished.append(m) if "cascade" in m and "finished" in m else None

    cut = run_study(c, should_stop=lambda: len(finished) >= 2, progress=progress)  # stops after two cascades
    assert cut.cancelled and 0 < len(cut.rows) < len(whole.rows)
    again = run_study(c)
    assert not again.cancelled and again.run["resumed"] == len(cut.rows) // 2  # two steps per cascade
    assert again.rows.equals(whole.rows) and any("read back" in n for n in again.notes)
    assert run_study(c).run["resumed"] == 4  # everything is kept once finished


def test_a_study_from_the_cache_on_ray_writes_its_files(tiny_moons_env, tmp_path, capsys, monkeypatch):
    """Rerun on Ray with every cascade already cached, a study starts no worker, so it has no worker count: it used
    to stop with KeyError 'workers' before writing anything."""
    import sipp_core.jobs.study as study
    from sipp_core.__main__ import main

    real = study.run_study

    def from_cache_on_ray(config, **kwargs):
        res = real(config, cache=kwargs.get("cache", True))
        res.run = {"executor": "ray", "tasks": 0}  # what a Ray run that found everything cached reports
        return res

    monkeypatch.setattr(study, "run_study", from_cache_on_ray)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('name = "tiny"\nmethods = ["random"]\nratios = [0.5]\nseeds = 1\nsample_size = 30\n'
                   '[[networks]]\nmodel = "mlp"\ndataset = "moons"\n')
    assert main(["study", str(cfg), "--quiet", "--out", str(tmp_path / "out")]) == 0
    assert "ray executor;" in capsys.readouterr().out and (tmp_path / "out" / "rows.csv").exists()


def test_a_study_files_errors_keep_its_own_words(tmp_path, capsys):
    """The command line says sample_size (the TOML key), not --sample-size; a binary file is not a study file; the
    fix for a bad method lists the channel methods a study runs too."""
    from sipp_core.__main__ import main

    cfg = tmp_path / "s.toml"
    cfg.write_text('name = "s"\nsample_size = 0\n[[networks]]\nmodel = "mlp"\ndataset = "moons"\n')
    assert main(["study", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "sample_size must be a positive integer" in err and "--sample-size" not in err
    binary = tmp_path / "d.npz"
    binary.write_bytes(b"PK\x03\x04\xd4\xff\x00 not text")
    assert main(["study", str(binary)]) == 2
    err = capsys.readouterr().err
    assert "is not a text file, so not a study file" in err and "fix: give the path of a .toml study file" in err
    cfg.write_text('name = "s"\nmethods = ["nope"]\n[[networks]]\nmodel = "mlp"\ndataset = "moons"\n')
    assert main(["study", str(cfg)]) == 2
    assert "pfp" in capsys.readouterr().err
