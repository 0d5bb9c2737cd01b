"""The package installs as documented: importable from any folder, a `sipp` command, pinned versions."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _names(lines) -> dict[str, str]:
    """{normalised name: lower bound spec} of requirement lines (comments and options skipped)."""
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", line)
        out[m.group(1).lower().replace("_", "-")] = m.group(2).replace(" ", "")
    return out


def test_sipp_core_imports_from_any_folder(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import sipp_core, ui.charts; print(sipp_core.__file__)"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).parent == ROOT / "sipp_core"


def test_sipp_command_is_the_module_command(tmp_path):
    sipp = Path(sys.executable).parent / "sipp"
    assert sipp.exists(), "the `sipp` console command is missing: pip install -e . in the repository"
    a = subprocess.run([str(sipp), "prune", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    b = subprocess.run([sys.executable, "-m", "sipp_core", "prune", "--help"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert a.returncode == b.returncode == 0
    options = lambda text: text[text.index("options:"):]  # noqa: E731 - the usage line wraps with the name
    assert a.stdout.startswith("usage: sipp prune") and options(a.stdout) == options(b.stdout)


def test_requirements_agree_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _names(project["dependencies"] + project["optional-dependencies"]["app"]
                      + project["optional-dependencies"]["test"])
    assert _names((ROOT / "requirements.txt").read_text().splitlines()) == declared


def test_constraints_pin_every_requirement_exactly():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt must pin exact versions, got {line!r}"
            pins[name.lower().replace("_", "-")] = version
    for name in _names((ROOT / "requirements.txt").read_text().splitlines()):
        assert name in pins, f"{name} is not pinned in constraints.txt"
    assert "torch" in pins and "torchvision" in pins


def _make(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # -o: take the virtual environment as installed, so that only the recipes asked for run
    return subprocess.run(["make", "-s", "-C", str(ROOT), "-o", ".venv/.installed-app", *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_make_run_compiles_the_app_before_serving_it():
    lines = _make("-n", "run").stdout.splitlines()
    compile_at = next(i for i, line in enumerate(lines) if "compileall" in line)
    serve_at = next(i for i, line in enumerate(lines) if "streamlit run app.py" in line)
    assert compile_at < serve_at
    for part in ("app.py", "studio.py", "ui", "pages", "sipp_core"):
        assert part in lines[compile_at].split()


def test_bytecode_step_writes_where_python_would_not_and_never_fails(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "mod.py").write_text("X = 1\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = _make("bytecode", f"PY={sys.executable}", f"APP_SOURCES={pkg}", env=env)
    assert done.returncode == 0, done.stderr
    assert list((pkg / "__pycache__").glob("mod.*.pyc"))
    # a source that cannot be compiled (here: absent; a read-only checkout alike) costs the speed-up, not the app
    done = _make("bytecode", f"PY={sys.executable}", f"APP_SOURCES={tmp_path / 'absent'}", env=env)
    assert done.returncode == 0 and not done.stdout and not done.stderr
