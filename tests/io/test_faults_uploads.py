"""Fault suite: hostile and degenerate uploads (.npz data, weights, exported programs) and a degenerate S.

Each case ends in a clear error (UploadError / DegenerateData naming the problem and the fix) or
is recovered with a warning. Memory-heavy cases run in a child process under an address-space cap
(``run_limited``); they print the child's peak memory (run with ``-s`` to see it).
"""
import io
import pickle
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sipp_core.errors import DegenerateData, UploadError
from sipp_core.io.byo import describe_model, load_exported_upload, load_npz_upload, load_state_dict_upload
from sipp_core.io.data import load_dataset
from sipp_core.io.npz import NPZ_MAX_EXPANDED_BYTES, load_npz_dataset
from sipp_core.io.uploads import safe_load_message
from sipp_core.plan.pruning import prune
from sipp_core.sensitivity.api import compute_sensitivities
from sipp_core.zoo.models import build_model
from tests.faults import fault, run_limited

ROOT = Path(__file__).resolve().parents[2]
# PyTorch's advice on a refused file; none of it may reach a user.
UNSAFE = ("weights_only", "Re-running", "safe_globals", "trust the source", "arbitrary code")


# ---------------------------------------------------------------------------------------------- helpers


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npz_member(v) -> bytes:
    """One array as np.savez stores it: a .npy file."""
    inner = io.BytesIO()
    np.save(inner, v)
    return inner.getvalue()


def good_arrays(n_train=200, n_test=40, shape=(6,), k=4, seed=0):
    rng = np.random.default_rng(seed)
    return dict(x_train=rng.normal(size=(n_train, *shape)).astype(np.float32), y_train=np.arange(n_train) % k,
                x_test=rng.normal(size=(n_test, *shape)).astype(np.float32), y_test=np.arange(n_test) % k)


def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def npy_header(shape, dtype="<f8") -> bytes:
    """A version 1.0 .npy header, padded as np.save pads it (to 64 bytes)."""
    text = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (dtype, tuple(shape))
    pad = 64 - (10 + len(text) + 1) % 64
    text = text + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def with_member(arrays: dict, name: str, raw: bytes, compress=zipfile.ZIP_STORED) -> bytes:
    """An .npz of `arrays` plus one member written byte for byte (a forged header, say)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as zf:
        for k, v in arrays.items():
            zf.writestr(f"{k}.npy", npz_member(v))
        zf.writestr(name, raw)
    return buf.getvalue()


def write_bomb(path: Path, arrays: dict, rows: int, cols: int, dtype="<f8") -> None:
    """x_train of zeros shaped (rows, cols), deflated while it is written: never whole in memory."""
    chunk = np.zeros((1024, cols), dtype=dtype).tobytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k, v in arrays.items():
            zf.writestr(f"{k}.npy", npz_member(v))
        with zf.open("x_train.npy", "w", force_zip64=True) as f:
            f.write(npy_header((rows, cols), dtype))
            for start in range(0, rows, 1024):
                f.write(chunk[: (min(rows, start + 1024) - start) * cols * np.dtype(dtype).itemsize])


CHILD = """
import time
from sipp_core.io.npz import load_npz_dataset
from sipp_core.errors import SippError

def status(key):
    return int(next(l for l in open("/proc/self/status") if l.startswith(key)).split()[1]) // 1024

before = status("VmHWM:")
t0 = time.perf_counter()
try:
    load_npz_dataset({path!r}, preprocessing="standardize")
    print("LOADED")
except SippError as exc:
    print("REFUSED", type(exc).__name__, exc)
print(f"MEMORY rss_before_mb={{before}} rss_peak_mb={{status('VmHWM:')}} seconds={{time.perf_counter() - t0:.2f}}")
"""


@pytest.fixture(scope="module")
def import_vm_mb():
    """Address space the child takes just by importing the engine (torch alone maps ~3 GB of it):
    the caps below are this plus what the case may use."""
    probe = ("import sipp_core.io.data\n"
             "print(next(l for l in open('/proc/self/status') if l.startswith('VmPeak:')).split()[1])")
    proc = run_limited(probe, memory_mb=64 * 1024, env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1]) // 1024


def load_in_child(path: Path, import_vm_mb: int, headroom_mb: int):
    proc = run_limited(CHILD.format(path=str(path)), memory_mb=import_vm_mb + headroom_mb, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    out = proc.stdout
    memory = next((l for l in out.splitlines() if l.startswith("MEMORY")), "MEMORY (none: the child died)")
    fields = dict(kv.split("=") for kv in memory.split()[1:]) if "=" in memory else {}
    print(f"\n  {path.name}: {memory}; cap {import_vm_mb + headroom_mb} MB of address space "
          f"({headroom_mb} MB over the import); peak_rss_mb (getrusage) {proc.peak_rss_mb}")
    assert proc.returncode == 0, f"the child failed: {proc.stderr[-2000:]}"
    return out, fields


# ---------------------------------------------------------------------------------------------- labels


@fault("npz label of 2**62", surface="library", outcome="clear error")
def test_label_of_2_pow_62_is_refused_before_anything_per_class(tmp_path, import_vm_mb):
    arrays = good_arrays()
    arrays["y_train"] = arrays["y_train"].astype(np.int64)
    arrays["y_train"][7] = 2**62
    path = tmp_path / "huge_label.npz"
    path.write_bytes(npz_bytes(**arrays))
    out, fields = load_in_child(path, import_vm_mb, headroom_mb=1500)
    assert "REFUSED UploadError" in out and "y_train contains the label 4611686018427387904" in out
    assert "at most 1000 classes" in out and "Fix:" in out
    assert float(fields["seconds"]) < 5
    assert int(fields["rss_peak_mb"]) - int(fields["rss_before_mb"]) < 100


@fault("npz label of 10**7", surface="library", outcome="clear error")
def test_label_of_ten_million_is_refused_fast(tmp_path, import_vm_mb):
    arrays = good_arrays()
    arrays["y_test"] = arrays["y_test"].copy()
    arrays["y_test"][0] = 10**7
    path = tmp_path / "big_label.npz"
    path.write_bytes(npz_bytes(**arrays))
    out, fields = load_in_child(path, import_vm_mb, headroom_mb=1500)
    assert "REFUSED UploadError" in out and "y_test contains the label 10000000" in out
    assert float(fields["seconds"]) < 5
    assert int(fields["rss_peak_mb"]) - int(fields["rss_before_mb"]) < 100


@fault("npz float label of 1e300", surface="library", outcome="clear error")
def test_huge_float_label_is_named_not_wrapped():
    arrays = good_arrays()
    arrays["y_train"] = arrays["y_train"].astype(np.float64)
    arrays["y_train"][3] = 1e300  # cast to int64 it would wrap to a negative label
    with pytest.raises(UploadError, match=r"y_train contains the label 1\d{300}: labels must be class indices"):
        load_npz_dataset(npz_bytes(**arrays))


# ---------------------------------------------------------------------------------------------- zip bombs


@fault("npz zip bomb (1 MB file, 1 GiB of arrays)", surface="library", outcome="clear error")
def test_compressed_bomb_is_refused_before_decompression(tmp_path, import_vm_mb):
    arrays = good_arrays()
    del arrays["x_train"]
    path = tmp_path / "bomb.npz"
    write_bomb(path, arrays, rows=131_072, cols=1024)  # 1 GiB of float64 zeros
    assert path.stat().st_size < 8 * 1024**2
    out, fields = load_in_child(path, import_vm_mb, headroom_mb=1000)
    assert "REFUSED UploadError" in out and "x_train.npy alone to 1,024 MiB" in out
    assert f"the limit is {NPZ_MAX_EXPANDED_BYTES // 1024**2} MiB" in out
    assert int(fields["rss_peak_mb"]) - int(fields["rss_before_mb"]) < 100


@fault("npz zip bomb of uint8 images (392 MB, 4x as float32)", surface="library", outcome="clear error")
def test_uint8_bomb_whose_float32_copy_is_too_big_is_refused(tmp_path, import_vm_mb):
    arrays = good_arrays(shape=(784,))
    arrays["x_test"] = arrays["x_test"].astype(np.uint8)
    del arrays["x_train"]
    path = tmp_path / "bomb_u8.npz"
    write_bomb(path, arrays, rows=500_000, cols=784, dtype="|u1")  # 392 MB, within the decompression limit
    out, fields = load_in_child(path, import_vm_mb, headroom_mb=1000)
    assert "REFUSED UploadError" in out and "as float32 once normalised" in out and "Fix: use fewer points" in out
    assert int(fields["rss_peak_mb"]) - int(fields["rss_before_mb"]) < 100


@fault("npz bomb of 392 MB float64 zeros (within the limit)", surface="library", outcome="clear error")
def test_bomb_within_the_limit_stays_bounded(tmp_path, import_vm_mb):
    arrays = good_arrays(shape=(1000,))
    del arrays["x_train"]
    arrays["y_train"] = np.arange(49_000) % 4
    path = tmp_path / "bomb_392mb.npz"
    write_bomb(path, arrays, rows=49_000, cols=1000)  # 392 MB of zeros: read, then refused as constant
    out, fields = load_in_child(path, import_vm_mb, headroom_mb=1000)
    assert "REFUSED DegenerateData" in out and "x_train is constant" in out
    assert int(fields["rss_peak_mb"]) - int(fields["rss_before_mb"]) < 600


@fault("npz zip entry that understates its expanded size", surface="library", outcome="recovered")
def test_lying_zip_entry_is_read_only_as_far_as_it_declares(tmp_path, import_vm_mb):
    arrays = good_arrays()
    x = arrays.pop("x_train").astype(np.float64)
    declared = npy_header(x.shape) + x.tobytes()
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k, v in arrays.items():
            zf.writestr(f"{k}.npy", npz_member(v))
        with zf.open("x_train.npy", "w") as f:
            f.write(declared)
            for _ in range(512):  # 512 MiB of zeros behind the array its header describes
                f.write(bytes(1024**2))
    path.write_bytes(declare_less(path.read_bytes(), "x_train.npy", declared))
    out, fields = load_in_child(path, import_vm_mb, headroom_mb=1000)
    assert "LOADED" in out
    assert int(fields["rss_peak_mb"]) - int(fields["rss_before_mb"]) < 100


def declare_less(raw: bytes, name: str, declared: bytes) -> bytes:
    """The zip with `name`'s uncompressed size and CRC rewritten to those of its first bytes `declared`
    (in the local header and the central directory): its deflate stream still expands to all of it."""
    out = bytearray(raw)
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        info = zf.getinfo(name)
    crc, size = zlib.crc32(declared), len(declared)
    struct.pack_into("<I", out, info.header_offset + 14, crc)
    struct.pack_into("<I", out, info.header_offset + 22, size)
    pos = _central_entry(out, name)
    struct.pack_into("<I", out, pos + 16, crc)
    struct.pack_into("<I", out, pos + 24, size)
    return bytes(out)


def _central_entry(out: bytearray, name: str) -> int:
    eocd = out.rfind(b"PK\x05\x06")
    pos = struct.unpack_from("<I", out, eocd + 16)[0]
    while out[pos:pos + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack_from("<HHH", out, pos + 28)
        if out[pos + 46:pos + 46 + n].decode() == name:
            return pos
        pos += 46 + n + m + k
    raise AssertionError(f"{name} not in the central directory")


# ---------------------------------------------------------------------------------------------- forged headers


@fault("npz member header claiming (10**12,) float64", surface="library", outcome="clear error")
def test_forged_npy_header_is_named_not_out_of_memory():
    arrays = good_arrays()
    del arrays["x_train"]
    raw = with_member(arrays, "x_train.npy", npy_header((10**12,)) + bytes(80))
    with pytest.raises(UploadError) as info:
        load_npz_dataset(raw)
    msg = str(info.value)
    assert "x_train" in msg and "(1000000000000,)" in msg and "damaged or was not written by np.savez" in msg


@fault("npz member header claiming 80 MB on 80 bytes", surface="app", outcome="clear error")
def test_forged_header_in_the_app_names_the_damage():
    from ui.views.bring_your_own import load_data_upload, refusal

    arrays = good_arrays()
    del arrays["x_test"]
    raw = with_member(arrays, "x_test.npy", npy_header((10**7, 1)) + bytes(80), compress=zipfile.ZIP_DEFLATED)
    with pytest.raises(UploadError) as info:
        load_data_upload(raw)
    text = refusal("The data set", info.value, "data")
    assert "x_test" in text and "(10000000, 1)" in text and "damaged" in text and "Out of memory" not in text


@fault("a single .npy with a forged header", surface="library", outcome="clear error")
def test_single_npy_is_refused_unread():
    with pytest.raises(UploadError, match="single .npy array"):
        load_npz_dataset(npy_header((10**12,)) + bytes(16))


# ---------------------------------------------------------------------------------------------- degenerate data


@fault("npz inputs around 1e300", surface="library", outcome="clear error")
def test_inputs_beyond_float32_are_refused():
    arrays = good_arrays()
    arrays["x_train"] = arrays["x_train"].astype(np.float64) * 1e300
    with pytest.raises(DegenerateData) as info:
        load_npz_dataset(npz_bytes(**arrays))
    msg = str(info.value)
    assert "x_train" in msg and "float32" in msg and "Fix: rescale the inputs" in msg


@fault("npz inputs near float32's limit overflow normalisation", surface="library", outcome="clear error")
def test_normalisation_overflow_is_refused():
    arrays = good_arrays()
    x = np.full((200, 6), 3.3e38, dtype=np.float32)
    x[::10] = -3.3e38  # mean 2.6e38: x - mean = -5.9e38 overflows float32
    arrays["x_train"] = x
    with pytest.raises(DegenerateData, match="x_train holds values too large for float32 arithmetic.*Fix: rescale"):
        load_npz_dataset(npz_bytes(**arrays), preprocessing="standardize")


@fault("npz with every feature constant", surface="library", outcome="clear error")
def test_all_constant_features_are_refused():
    arrays = good_arrays()
    arrays["x_train"] = np.full((200, 6), 7.0, dtype=np.float32)
    with pytest.raises(DegenerateData, match="x_train is constant: every feature"):
        load_npz_dataset(npz_bytes(**arrays), preprocessing="standardize")


@fault("npz with one constant feature", surface="library", outcome="recovered")
def test_one_constant_feature_never_divides_by_zero():
    arrays = good_arrays()
    arrays["x_train"][:, 2] = 5.0
    rec = load_npz_dataset(npz_bytes(**arrays), preprocessing="standardize")
    assert rec.std[2] == 1.0  # left unscaled instead of dividing by 0
    for which in ("train", "pool", "test"):
        assert torch.isfinite(rec.split(which)[0]).all()
    assert torch.all(rec.x_train[:, 2] == 0)


@fault("all-zero S", surface="library", outcome="clear error")
def test_all_zero_s_is_refused():
    model = build_model("mlp", (2,), 2, widths=(8,), seed=0)
    s = torch.zeros(20, 2)
    for call in (lambda: prune(model, s, keep_ratio=0.5), lambda: compute_sensitivities(model, s)):
        with pytest.raises(DegenerateData, match="every point of S is zero.*Fix: draw S from real inputs"):
            call()


@fault("a layer that sees only zeros on S (NaN bound)", surface="library", outcome="recovered")
def test_layer_without_signal_is_explained():
    model = build_model("mlp", (2,), 2, widths=(8, 8), seed=0)
    with torch.no_grad():
        model.fc1.bias.fill_(-100.0)  # every unit of the first layer inactive: layer fc2 sees zeros
    with pytest.warns(RuntimeWarning, match=r"layer\(s\) fc2 received only zeros on every point of S.*NaN"):
        r = prune(model, torch.randn(20, 2), keep_ratio=0.5)
    assert [l.name for l in r.layers if l.bound != l.bound] == ["fc2"]


# ---------------------------------------------------------------------------------------------- weights and programs


@fault("random bytes uploaded as weights", surface="library", outcome="clear error")
def test_random_bytes_as_weights_give_a_whole_plain_message():
    rec = load_dataset("moons")
    raw = np.random.default_rng(0).bytes(3000)
    with pytest.raises(UploadError) as info:
        load_state_dict_upload(raw, "mlp", rec, model_options=dict(widths=(8,)))
    msg = str(info.value)
    assert "this file is not a readable PyTorch file saved with torch.save" in msg
    assert "Fix: save it with torch.save(model.state_dict(), 'weights.pt') and upload that file" in msg
    assert not any(u in msg for u in UNSAFE)


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@fault("torch.load errors that advise weights_only=False", surface="library", outcome="clear error")
def test_safe_load_message_never_advises_unsafe_loading():
    good = _saved({"w": torch.zeros(300)})
    blobs = [np.random.default_rng(1).bytes(500), b"PK\x03\x04 truncated zip", good[: len(good) // 2],
             _saved({"w": torch.zeros(2), "evil": Evil()})]
    for blob in blobs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(Exception) as info:
                torch.load(io.BytesIO(blob), weights_only=True)
        text = safe_load_message(info.value)
        assert text and not any(u in text for u in UNSAFE), text
        assert len(text) <= 162 and not text.endswith(".")
    assert "it holds the Python object print" in text


@fault("exported program whose pickled weight holds an object", surface="library", outcome="clear error")
def test_exported_pickled_object_message_has_no_unsafe_advice():
    from sipp_core.io import pt2_scan

    why = pt2_scan._weights_only_ok(_saved({"w": Evil()}))
    assert why and "print" in why and not any(u in why for u in UNSAFE)


@fault("weights uploaded to the app as random bytes", surface="app", outcome="clear error")
def test_app_refusal_of_random_bytes_is_plain():
    from ui.views.bring_your_own import load_model_upload, refusal

    rec = load_dataset("moons")
    with pytest.raises(UploadError) as info:
        load_model_upload("state_dict", np.random.default_rng(2).bytes(4000), rec, "mlp")
    text = refusal("“w.pt”", info.value)
    assert "not a readable PyTorch file" in text and "Fix:" in text and not any(u in text for u in UNSAFE)


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1d = nn.Conv1d(1, 4, 1)
        self.fc = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        h = self.conv1d(x.unsqueeze(1)).flatten(1)
        return self.out(self.norm(torch.relu(self.fc(h))))


@fault("exported program with a Conv1d and a LayerNorm", surface="library", outcome="recovered")
def test_exported_unsupported_layers_are_named_with_their_type():
    rec = load_dataset("moons")
    ep = torch.export.export(Conv1dNet().eval(), (rec.x_test[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    gm = load_exported_upload(buf.getvalue(), rec)
    d = describe_model(gm, rec)
    assert [p["name"] for p in d.prunable] == ["fc", "out"]
    reasons = {x["name"]: x["reason"] for x in d.dense}
    assert len(d.dense) == len(reasons) == 2  # each once
    assert reasons["conv1d"].startswith("torch.nn.Conv1d is not supported:")
    assert reasons["norm"] == "torch.nn.LayerNorm: normalisation parameters are not pruned"
    r = prune(gm, rec.x_pool[:40], keep_ratio=0.5)
    assert set(r.masks) == {"fc", "out"}


# ----------------------------------------------------------------------------------- refusals already in place


def _refusal(case, change, fragments):
    return pytest.param(change, fragments, marks=fault(case, surface="library", outcome="clear error"), id=case)


@pytest.mark.parametrize("change, fragments", [
    _refusal("npz missing y_test", dict(y_test=None), ["missing", "y_test", "np.savez"]),
    _refusal("npz with an extra array", dict(x_val=np.zeros(3)), ["unexpected", "x_val"]),
    _refusal("npz x_train and x_test shaped differently", dict(x_test=np.zeros((40, 5), np.float32)),
             ["same shape"]),
    _refusal("npz x_train and y_train of different lengths", dict(y_train=np.arange(199) % 4),
             ["200", "199", "match"]),
    _refusal("npz with NaN inputs", dict(x_train=np.full((200, 6), np.nan)), ["x_train", "NaN"]),
    _refusal("npz with a negative label", dict(y_test=np.arange(40) % 4 - 1), ["y_test", "-1", "0..K-1"]),
])
def test_existing_npz_refusals(change, fragments):
    arrays = good_arrays()
    arrays.update(change)
    with pytest.raises(UploadError) as info:
        load_npz_upload(npz_bytes(**{k: v for k, v in arrays.items() if v is not None}))
    for frag in fragments:
        assert frag in str(info.value)


@fault("npz holding a pickled object", surface="library", outcome="clear error")
def test_pickle_bearing_npz_never_unpickles(tmp_path):
    canary = tmp_path / "canary"

    class Touch:
        def __reduce__(self):
            return (open, (str(canary), "w"))

    arrays = good_arrays()
    arrays["class_names"] = np.array([Touch(), "b", "c", "d"], dtype=object)
    with pytest.raises(UploadError, match="class_names holds Python objects.*pickle"):
        load_npz_dataset(npz_bytes(**arrays))
    assert not canary.exists()
    with pytest.raises(UploadError, match="not an .npz archive: an .npz is a zip file"):
        load_npz_dataset(pickle.dumps(Touch()))
    assert not canary.exists()


@fault("state_dict with wrong shapes", surface="library", outcome="clear error")
def test_state_dict_with_wrong_shapes():
    rec = load_dataset("moons")
    sd = build_model("mlp", (2,), 2, widths=(16,), seed=0).state_dict()
    with pytest.raises(UploadError, match=r"first misfit: fc1.weight is \(16, 2\) in the file, but its place in the "
                                          r"architecture \(fc1.weight\) takes \(8, 2\)"):
        load_state_dict_upload(_saved(sd), "mlp", rec, model_options=dict(widths=(8,)))


@fault("npz saved in big-endian byte order", surface="library", outcome="recovered")
def test_big_endian_arrays_load():
    arrays = good_arrays()
    native = load_npz_dataset(npz_bytes(**arrays))
    swapped = {k: v.astype(v.dtype.newbyteorder(">")) for k, v in arrays.items()}
    rec = load_npz_dataset(npz_bytes(**swapped))
    for which in ("train", "pool", "test"):
        assert torch.equal(rec.split(which)[0], native.split(which)[0])
