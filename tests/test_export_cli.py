"""SavedModel export, Keras save/load, and the tfp-gauss command."""

import contextlib
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_gauss
from tfp_gauss import cli
from tfp_gauss.keras import GaussianizationFlowModel, OneCycleCosine

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def exported(tmp_path_factory, moons):
    flow = tfp_gauss.fit_rbig(moons, n_layers=3, n_components=4, seed=0)
    path = tmp_path_factory.mktemp("export") / "sm"
    tfp_gauss.export_saved_model(flow, str(path), shift=[1.0, -2.0], scale=[2.0, 0.5])
    return flow, path


def test_saved_model_runs_with_tensorflow_alone_in_a_fresh_process(exported, tmp_path):
    flow, path = exported
    x = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = f"""
import sys, numpy as np, tensorflow as tf
m = tf.saved_model.load({str(path)!r})
x = np.load({str(tmp_path / 'x.npy')!r})
lp = m.signatures["log_prob"](x=tf.constant(x))["log_prob"].numpy()
z = m.signatures["gaussianize"](x=tf.constant(x))["z"]
x_back = m.signatures["generate"](z=z)["x"].numpy()
s = m.signatures["sample"](n=tf.constant(7), seed=tf.constant([1, 2]))["x"].numpy()
zt = tf.constant(z)
with tf.GradientTape() as tape:
    tape.watch(zt)
    out = m.generate(zt)["x"]
g = tape.gradient(out, zt).numpy()
np.savez({str(tmp_path / 'out.npz')!r}, lp=lp, z=z.numpy(), x_back=x_back, s=s, g=g)
assert "tfp_gauss" not in sys.modules and "tensorflow_probability" not in sys.modules
"""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # no "Importing a function ... with ops with unsaved custom gradients" on load
    assert "custom gradient" not in proc.stderr, proc.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    y = (x - np.array([1.0, -2.0], np.float32)) / np.array([2.0, 0.5], np.float32)
    expected = flow.log_prob(y).numpy() - np.log(2.0 * 0.5)
    np.testing.assert_allclose(out["lp"], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["z"], flow.bijector.bijector.forward(y).numpy(),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["x_back"], x, rtol=1e-4, atol=1e-4)
    assert out["s"].shape == (7, 2) and np.isfinite(out["s"]).all()
    # The served sample (stacked-layer sampler) draws what the flow draws for the seed.
    drawn = flow.sample(7, seed=tf.constant([1, 2])).numpy()
    np.testing.assert_allclose(out["s"], np.array([1.0, -2.0]) + np.array([2.0, 0.5]) * drawn,
                               rtol=1e-4, atol=1e-4)
    # d sum(generate(z)) / dz through the reloaded function equals the in-memory one
    z = tf.constant(out["z"])
    with tf.GradientTape() as tape:
        tape.watch(z)
        x_mem = np.array([2.0, 0.5], np.float32) * flow.bijector.bijector.inverse(z)
    np.testing.assert_allclose(out["g"], tape.gradient(x_mem, z).numpy(), rtol=1e-4, atol=1e-5)


def test_signatures_take_and_return_what_they_are_documented_to(exported):
    # Names, dtypes and shapes of the four serving signatures (a batch of any
    # size; `sample` takes a count and a stateless seed).
    _, path = exported
    sigs = tf.saved_model.load(str(path)).signatures
    assert set(sigs) == {"log_prob", "sample", "gaussianize", "generate"}
    expected = {"log_prob": ({"x": [None, 2]}, {"log_prob": [None]}),
                "gaussianize": ({"x": [None, 2]}, {"z": [None, 2]}),
                "generate": ({"z": [None, 2]}, {"x": [None, 2]}),
                "sample": ({"n": [], "seed": [2]}, {"x": [None, 2]})}
    for name, (inputs, outputs) in expected.items():
        spec = sigs[name].structured_input_signature[1]
        assert {k: v.shape.as_list() for k, v in spec.items()} == inputs, name
        out = sigs[name].structured_outputs
        assert {k: v.shape.as_list() for k, v in out.items()} == outputs, name
        assert all(v.dtype == tf.float32 for k, v in spec.items() if k in ("x", "z"))


def test_export_standardization_is_one_number_or_one_per_column(exported, tmp_path):
    flow, _ = exported
    with pytest.raises(ValueError, match=r"scale must be one number or 2 numbers .* got 3"):
        tfp_gauss.export_saved_model(flow, str(tmp_path / "bad"), scale=[1.0, 2.0, 3.0])
    assert not (tmp_path / "bad").exists()
    # one number serves every column: log p(x) = log p_flow((x - 1) / 2) - 2 log 2
    module = tfp_gauss.export.FlowModule(flow, shift=1.0, scale=2.0)
    x = np.array([[0.5, 2.0], [3.0, 1.0]], np.float32)
    expected = flow.log_prob((x - 1.0) / 2.0).numpy() - 2.0 * np.log(2.0)
    np.testing.assert_allclose(module.log_prob(x)["log_prob"].numpy(), expected, rtol=1e-5)


def test_reloaded_log_prob_and_gaussianize_have_gradients_in_x(exported, moons):
    # Their layer loop held a custom gradient inside a tf.while_loop, which a
    # SavedModel drops: a tape through them raised "... is out of scope".
    flow, path = exported
    loaded = tf.saved_model.load(str(path))  # (kept: its signatures read its variables)
    served = loaded.signatures
    x = moons[:50]
    raw = tf.constant(x * np.array([2.0, 0.5], np.float32) + np.array([1.0, -2.0], np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(raw)
        log_prob = served["log_prob"](x=raw)["log_prob"]
        z = served["gaussianize"](x=raw)["z"]
        first = z[:, 0]  # (one output column: a Jacobian row, not just a sum)
    rows = tf.constant(x)
    with tf.GradientTape(persistent=True) as ref:
        ref.watch(rows)
        ref_log_prob = flow.log_prob(rows)
        ref_z = tfp_gauss.flows.flow_gaussianizer(flow).forward(rows)
        ref_first = ref_z[:, 0]
    units = np.array([2.0, 0.5])
    for got, want in ((tape.gradient(log_prob, raw), ref.gradient(ref_log_prob, rows)),
                      (tape.gradient(z, raw), ref.gradient(ref_z, rows)),
                      (tape.gradient(first, raw), ref.gradient(ref_first, rows))):
        np.testing.assert_allclose(got.numpy(), want.numpy() / units, rtol=1e-3, atol=1e-4)

    # and second derivatives (nested tapes): d/dx of the weighted gradient
    def curvature(fn, at, weights):
        with tf.GradientTape() as outer:
            outer.watch(at)
            with tf.GradientTape() as inner:
                inner.watch(at)
                value = tf.reduce_sum(fn(at))
            summed = tf.reduce_sum(inner.gradient(value, at) * weights)
        return outer.gradient(summed, at).numpy()

    # (in raw units the gradient is the flow's / units; weighting by units
    # leaves the flow's summed gradient, whose derivative is again / units)
    served_curvature = curvature(lambda v: served["log_prob"](x=v)["log_prob"], raw[:10],
                                 tf.constant(units, tf.float32))
    ref_curvature = curvature(flow.log_prob, rows[:10], 1.0)
    np.testing.assert_allclose(served_curvature, ref_curvature / units, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("width", [1, 3])
def test_signatures_refuse_a_wrong_width_clearly(exported, width):
    """A signature takes any [n, m] (its [None, 2] is not checked on a call); a
    wrong width is an error that names the signature and the expected shape, not
    a broadcasting error from inside the flow (or, at width 1, silent numbers)."""
    _, path = exported
    sigs = tf.saved_model.load(str(path)).signatures
    for name, arg in (("log_prob", "x"), ("gaussianize", "x"), ("generate", "z")):
        expected = rf"{name}: {arg} must have shape \[n, 2\].*got shape\] \[4 {width}\]"
        with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
            sigs[name](**{arg: tf.zeros([4, width])})
        assert list(sigs[name](**{arg: tf.zeros([0, 2])}).values())[0].shape[0] == 0
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"got shape\] \[2\]"):
            sigs[name](**{arg: tf.zeros([2])})  # one row without its batch axis
        for shape in ([4, 1, 2], [0, 3, 2]):  # rank 3 (would broadcast or pass a size test)
            with pytest.raises(tf.errors.InvalidArgumentError, match=r"must have shape \[n, 2\]"):
                sigs[name](**{arg: tf.zeros(shape)})
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"n must be a count >= 0.*-1"):
        sigs["sample"](n=tf.constant(-1), seed=tf.constant([1, 2]))
    assert sigs["sample"](n=tf.constant(0), seed=tf.constant([1, 2]))["x"].shape == (0, 2)


def test_keras_save_load_resumes_training(tmp_path, moons):
    x = moons[:1024]
    model = GaussianizationFlowModel(2, n_layers=2, n_components=3, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(OneCycleCosine(40, 3e-3),
                                                  global_clipnorm=1.0))
    model.fit(x, batch_size=256, epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, GaussianizationFlowModel)
    np.testing.assert_array_equal(loaded.log_prob(x).numpy(), model.log_prob(x).numpy())
    assert int(loaded.optimizer.iterations.numpy()) == 8
    assert isinstance(loaded.optimizer._learning_rate, OneCycleCosine)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # training continues from the saved state: one more epoch on each copy agrees
    model.fit(x, batch_size=256, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, batch_size=256, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_allclose(loaded.log_prob(x).numpy(), model.log_prob(x).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_keras_model_export(tmp_path, moons):
    model = GaussianizationFlowModel(2, n_layers=1, n_components=2, seed=0)
    model.export(str(tmp_path / "kexp"), format="tf_saved_model",
                 input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    served = tf.saved_model.load(str(tmp_path / "kexp"))
    np.testing.assert_allclose(served.serve(moons[:10]).numpy(),
                               model.log_prob(moons[:10]).numpy(), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One `tfp-gauss fit --overwrite` of the built-in data into a folder of user files.

    Shared by the tests that read a run. Returns the folder, the command's
    stdout and the user's files as they were before (path -> bytes). Run
    without --verbose and with stdout captured (not a terminal), as when the
    output goes to a log file.
    """
    out = tmp_path_factory.mktemp("cli") / "run"
    _make_user_files(out)
    user_files = _files(out)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = cli.main(["fit", "--out", str(out), "--steps", "20", "--layers", "2",
                       "--components", "3", "--noise", "0.05", "--overwrite"])
    assert rc == 0
    return out, stdout.getvalue(), user_files


def _make_user_files(folder):
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("x\n")
    (folder / "sub" / "deep.bin").write_bytes(bytes(range(256)))
    (folder / ".hidden").write_text("dotfile")


def _files(root):
    """Every regular file under ``root``: relative path -> bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_cli_progress_written_to_a_file_is_plain_lines(cli_run):
    stdout = cli_run[1]
    assert "loss" in stdout and "train NLL" in stdout
    assert "\r" not in stdout and "\x1b" not in stdout  # no progress-bar redraws, no ANSI


def test_cli_fit_sample_score(cli_run, tmp_path):
    out = cli_run[0]
    for name in ("saved_model", "model.keras", "report.json", "training.png", "samples.png"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["init"] == "rbig" and report["data"]["train_rows"] == 2700
    assert report["config"]["noise"] == 0.05
    # 2,700 training rows: scale_floor="auto" trains a fit with a floor and one
    # without and keeps the floor unless the other leads by more than one
    # standard error (both recorded)
    candidates = {float(k): v for k, v in report["config"]["scale_floor_candidates"].items()}
    assert len(candidates) == 2
    lead = report["config"]["scale_floor_difference"]
    plain_wins = lead["mean"] > lead["standard_error"]
    assert report["config"]["scale_floor"] == (0.0 if plain_wins else max(candidates))
    # the lead is the plain fit's in mean validation log-likelihood
    assert lead["mean"] == pytest.approx(candidates[max(candidates)] - candidates[0.0], abs=1e-4)
    # 2,700 training rows: `auto` fits coupling layers, and the report says so
    assert report["config"]["architecture"] == "coupling"
    assert np.isfinite(report["results"]["validation_nll"])
    # the weights kept are those of the best validation evaluation (the warm start
    # at step 0 or the one after the 20 steps): its NLL is the least in the history
    results = report["results"]
    assert results["best_step"] in (0, 20) and results["steps_run"] == 20
    # the averaged weights (Polyak averaging is on by default; --ema-momentum 0 turns it off)
    assert report["config"]["ema_momentum"] == pytest.approx(0.99)
    assert results["selection"] == "weights of the best validation evaluation (moving average)"
    assert set(report["versions"]) >= {"tensorflow", "tensorflow_probability", "keras"}
    assert cli.main(["sample", str(out), "-n", "11", "--out", str(tmp_path / "s.csv")]) == 0
    samples = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    assert samples.shape == (11, 2)
    assert b"\r" not in (tmp_path / "s.csv").read_bytes()  # (csv's default ends lines \r\n)
    # --out *.npy writes an array (it wrote CSV text that np.load refused), as fit reads
    assert cli.main(["sample", str(out), "-n", "11", "--out", str(tmp_path / "s.npy")]) == 0
    # float32 draws in CSV by their shortest float32 digits (they were written with
    # float64's 17), which read back to the same float32 values
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy").astype(np.float32),
                                  samples.astype(np.float32))
    fields = (tmp_path / "s.csv").read_text().split("\n")[1].split(",")
    assert max(len(f.lstrip("-").replace(".", "")) for f in fields) <= 10, fields
    assert cli.main(["score", str(out), str(tmp_path / "s.csv"),
                     "--out", str(tmp_path / "scores.csv")]) == 0
    scores = np.loadtxt(tmp_path / "scores.csv", delimiter=",", skiprows=1)
    assert scores.shape == (11,) and np.isfinite(scores).all()
    assert cli.main(["score", str(out), str(tmp_path / "s.npy"),
                     "--out", str(tmp_path / "scores.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), scores, rtol=1e-15)
    # the served density is in data units: equal to the report's standardization
    # applied to the Keras model
    model = keras.models.load_model(out / "model.keras")
    shift = np.array(report["standardization"]["shift"])
    scale = np.array(report["standardization"]["scale"])
    expected = model.log_prob(((samples - shift) / scale).astype(np.float32)).numpy()
    np.testing.assert_allclose(scores, expected - np.log(scale).sum(), rtol=1e-5, atol=1e-5)


def test_cli_fit_continues_a_previous_run(cli_run, tmp_path):
    out = cli_run[0]
    first = json.loads((out / "report.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["fit", "--out", str(tmp_path / "more"), "--steps", "40",
                         "--init", str(out)]) == 0
    second = json.loads((tmp_path / "more" / "report.json").read_text())
    # same model shape and the same standardization as the run it continues
    assert second["config"]["layers"] == 2 and second["config"]["components"] == 3
    assert second["standardization"] == first["standardization"]
    assert second["results"]["steps_run"] >= 40
    # the starting weights are a candidate on the same held-out rows (same seed),
    # so continuing can only keep or improve the validation NLL
    assert second["results"]["validation_nll"] <= first["results"]["validation_nll"] + 1e-4
    with contextlib.redirect_stderr(io.StringIO()) as msg:
        rc = cli.main(["fit", "--out", str(tmp_path / "bad"), "--init", str(tmp_path)])
    assert rc == 2 and "expected 'rbig', 'random' or a directory" in msg.getvalue()


@pytest.mark.parametrize("content,extra,match", [
    (None, [], "data file not found"),
    ("dir", [], "is a directory; expected a CSV or .npy data file"),
    ("a,b\n1,2\nx,3\n", [], "non-numeric value 'x' in data row 2, column 1 ('a')"),
    # rows are data rows numbered from 1: blank lines and the header do not count
    ("a,b\n1,2\n\n3\n", [], "ragged rows: data row 2 has 1 field(s)"),
    ("1,2\nnan,3\n4,5\n", [], ("1 of 3 rows holding NaN or infinity (columns [1]; first rows "
                                "[2]; numbered from 1). Remove or impute them before fitting")),
    # a headerless file whose first row has a missing value is not taken as a header
    ("NA,0.5\n1,2\n3,4\n", [], "cannot tell whether the first row ['NA', '0.5'] is a header"),
    ("NA,0.5\n1,2\n3,4\n", ["--no-header"], "missing value 'NA' in data row 1, column 1"),
    ("x,y\n1,2\n2,4\n3,6\n", [], "columns 1, 2 (numbered from 1) are linearly dependent"),
    # perfectly correlated columns give no density: stop before fitting
    ("a,b,c\n1,5,1\n2,3,2\n3,8,3\n4,1,4\n", [],
     "columns 1, 3 (numbered from 1) are linearly dependent"),
    ("a,b\n1,5\n1,3\n1,8\n", [], "column(s) 1 (value 1) are constant"),
    # one data row cannot be split into training and held-out rows
    ("a,b\n1,5\n", ["--validation-split", "0.1"],
     ("--validation-split 0.1 of 1 data rows holds out 0 and trains on 1; both need at least "
      "one row")),
    # 1 + 1e-12 noise is not constant in float64, but float32 cannot tell the values apart
    ("a,b\n1.000000000001,5\n0.999999999999,3\n1.000000000002,8\n", [],
     ("column 1 (numbered from 1) varies by only 1.25e-12 (standard deviation) at magnitude 1: "
      "float32, in which the model computes, resolves only")),
])
def test_cli_bad_data_exits_2_and_leaves_the_output_dir(tmp_path, capsys, content, extra, match):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    data = tmp_path / "data.csv"
    if content == "dir":
        data.mkdir()
    elif content is not None:
        data.write_text(content)
    assert cli.main(["fit", str(data), "--out", str(out), "--steps", "2", "--verbose", "0",
                     "--validation-split", "0", *extra]) == 2
    assert match in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "run"][content is None:]


def test_cli_failure_during_fit_keeps_the_previous_run(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    (out / "report.json").write_text("the previous run's report")

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure while saving")

    monkeypatch.setattr(tfp_gauss, "export_saved_model", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        cli.main(["fit", "--out", str(out), "--steps", "2", "--layers", "1",
                  "--components", "2", "--verbose", "0", "--overwrite"])
    assert (out / "keep.txt").read_text() == "precious"
    assert (out / "report.json").read_text() == "the previous run's report"
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "report.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def _small_fit(data, out, *extra):
    """`tfp-gauss fit` arguments for a quick run (a second or two of training)."""
    return ["fit", *([] if data is None else [str(data)]), "--out", str(out), "--steps", "10",
            "--layers", "1", "--components", "2", "--batch-size", "64", "--verbose", "0",
            "--validation-split", "0", *extra]


def test_cli_fit_never_deletes_a_file_it_did_not_create(cli_run, tmp_path, capsys):
    """A fresh-clone test proves that a successful run never deletes a file it did not create.

    With --overwrite: `cli_run` fit into a folder of user files (notes, a
    subfolder, a dotfile). Without: a folder of user files that holds the
    input data is refused; a copy of the `cli_run` folder, now a tfp-gauss
    run, is re-fit with other data, which replaces only the run's files.
    Every user file stays byte-identical and nothing is left beside them.
    The other data have a column of magnitude 1e30, whose float32 standard
    deviation overflows: standardized in float64 it fits like any other.
    """
    run, _, user_files = cli_run
    after = _files(run)
    assert {name: after[name] for name in user_files} == user_files
    run_names = sorted(os.listdir(run))
    assert set(run_names) == {"notes.txt", "sub", ".hidden", "saved_model", "model.keras",
                              "report.json", "training.png", "samples.png", cli.MARKER_NAME}

    rng = np.random.default_rng(0)
    user = tmp_path / "d"
    _make_user_files(user)
    np.save(user / "data.npy", rng.normal(size=(300, 2)))
    before = _files(user)
    assert cli.main(_small_fit(user / "data.npy", user)) == 2
    err = capsys.readouterr().err
    assert f"--out {user} holds the input data" in err and "--overwrite" in err
    assert _files(user) == before

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    other = rng.normal(size=(300, 2)) * [1.0, 1e30] + [0.0, 3e30]
    np.save(tmp_path / "other.npy", other)
    assert cli.main(_small_fit(tmp_path / "other.npy", copy)) == 0
    after = _files(copy)
    assert {name: after[name] for name in user_files} == user_files
    assert sorted(os.listdir(copy)) == run_names  # no lock, staging or backup left
    assert sorted(os.listdir(tmp_path)) == ["d", "other.npy", "run"]
    report = json.loads((copy / "report.json").read_text())
    assert report["data"]["source"] == str(tmp_path / "other.npy")
    assert report["data"]["train_rows"] == 300 and np.isfinite(report["results"]["train_nll"])
    np.testing.assert_allclose(report["standardization"]["scale"], other.std(0), rtol=1e-12)


def test_cli_refuses_the_current_directory_and_an_existing_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "notes.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    assert cli.main(_small_fit(None, ".")) == 2
    assert "is not empty (1 entries: notes.txt) and is not a tfp-gauss run" in (
        capsys.readouterr().err)
    assert cli.main(_small_fit(None, "notes.txt")) == 2
    assert f"--out {tmp_path / 'notes.txt'} is an existing file" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "x"


def test_cli_second_fit_to_the_same_out_fails_at_once(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    second = {}

    def fit_that_starts_a_second_fit(*args, **kwargs):
        if second:
            raise AssertionError("the second fit to the same --out reached training")
        second["started"] = time.perf_counter()
        second["rc"] = cli.main(_small_fit(None, out))
        second["seconds"] = time.perf_counter() - second["started"]
        second["err"] = capsys.readouterr().err
        raise RuntimeError("the first fit stops here")

    monkeypatch.setattr(tfp_gauss, "fit_gaussianization_flow", fit_that_starts_a_second_fit)
    with pytest.raises(RuntimeError, match="the first fit stops here"):
        cli.main(_small_fit(None, out))
    assert second["rc"] == 2 and second["seconds"] < 5
    assert f"another tfp-gauss fit (pid {os.getpid()}) is writing to {out}" in second["err"]
    assert os.listdir(tmp_path) == []  # the failed first fit removed the directory it created


def test_cli_sigterm_during_fit_removes_its_partial_output(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"

    class Terminated(Exception):
        """What a SIGTERM raises unless the command handles the signal itself."""

    def test_handler(signum, frame):
        raise Terminated

    def fit_interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal arrives during "training"
        raise AssertionError("SIGTERM was not delivered")

    monkeypatch.setattr(tfp_gauss, "fit_gaussianization_flow", fit_interrupted)
    previous = signal.signal(signal.SIGTERM, test_handler)
    try:
        assert cli.main(_small_fit(None, out)) == 128 + signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is test_handler  # restored afterwards
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert "stopped by SIGTERM" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_cli_next_fit_removes_what_a_killed_fit_left(tmp_path, monkeypatch):
    out = tmp_path / "run"
    script = f"""
import os, signal
import tfp_gauss
from tfp_gauss import cli

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

tfp_gauss.fit_gaussianization_flow = killed
cli.main({_small_fit(None, out)!r})
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    left = [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
    assert left  # kill -9 leaves its staging behind; nothing can prevent that ...

    def failing_fit(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(tfp_gauss, "fit_gaussianization_flow", failing_fit)
    with pytest.raises(RuntimeError, match="simulated"):
        cli.main(_small_fit(None, out))
    # ... but the next fit to the same --out removes it (the killed pid is not alive)
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*")] == [pathlib.Path("run")]


def test_cli_scores_rows_beyond_float32_finite(cli_run, tmp_path, capsys):
    out = cli_run[0]
    big = np.finfo(np.float32).max
    direction = np.array([1.0, -0.5])
    scales = np.array([1e19, 1e30, big, -1e19, -1e30, -big])
    rows = np.concatenate([[[0.1, 0.2]], scales[:, None] * direction])
    lines = [f"{float(a)!r},{float(b)!r}" for a, b in rows]  # headerless, full precision
    (tmp_path / "far.csv").write_text("\n".join(lines) + "\n")
    assert cli.main(["score", str(out), str(tmp_path / "far.csv"),
                     "--out", str(tmp_path / "scores.csv")]) == 0
    lp = np.loadtxt(tmp_path / "scores.csv", delimiter=",", skiprows=1)
    assert lp.shape == (7,) and np.isfinite(lp).all() and np.all(lp[1:] < -1e30)
    err = capsys.readouterr().err
    assert "first row is numeric, read as data" in err and "scored in float64" in err
    # Far out every layer is affine (its widest component's tail), so along a
    # ray G(t v) = t A v + b and log p(t v) = -t^2 |A v|^2 / 2 + O(t).
    for side in (slice(0, 3), slice(3, 6)):
        far = lp[1:][side]
        np.testing.assert_allclose(far[1:] / far[0], (scales[side][1:] / 1e19) ** 2, rtol=1e-6)
    # the ordinary row is the served float32 value, as before
    assert -10 < lp[0] < 0


def test_cli_sample_keeps_the_fitted_column_names(tmp_path):
    # Before, samples were headed x0,x1 whatever the fitted file's header said.
    x = np.random.default_rng(0).normal(size=(200, 2)) * [3.0, 0.5] + [70.0, 3.5]
    lines = ["waiting,duration"] + [f"{float(a)!r},{float(b)!r}" for a, b in x]
    (tmp_path / "geyser.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(["fit", str(tmp_path / "geyser.csv"), "--out", str(out), "--steps", "5",
                         "--layers", "1", "--components", "2"]) == 0
        assert cli.main(["sample", str(out), "-n", "4", "--out", str(tmp_path / "s.csv")]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["column_names"] == ["waiting", "duration"]
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "waiting,duration" and len(lines) == 5
    # without a header (the built-in data, a .npy file): x0, x1
    assert cli._column_names(tmp_path, 2) == ["x0", "x1"]
    # --seed S is model.sample's int seed S: the same rows for the same S, other rows
    # for another S (before, S wrapped into int32: S and S + 2**32 drew the same rows)
    drawn = []
    for name, seed in (("a.csv", 2**31 + 5), ("b.csv", 2**31 + 5), ("c.csv", 2**31 + 5 + 2**32)):
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli.main(["sample", str(out), "-n", "4", "--seed", str(seed),
                             "--out", str(tmp_path / name)]) == 0
        drawn.append((tmp_path / name).read_text())
    assert drawn[0] == drawn[1] and drawn[0] != drawn[2]
    # score reads columns by position: a header in another order, or with other names,
    # is an error (before: exit 0 and log-densities of the swapped columns, ~-1e2 here)
    for header, rows, code in (("waiting,duration", x[:3], 0), ("duration,waiting", x[:3, ::-1], 2),
                               ("Waiting,Duration", x[:3], 2), (None, x[:3], 0)):
        body = [f"{float(a)!r},{float(b)!r}" for a, b in rows]
        text = "\n".join(([header] if header else []) + body)
        (tmp_path / "q.csv").write_text(text + "\n")
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            assert cli.main(["score", str(out), str(tmp_path / "q.csv"), "--out",
                             str(tmp_path / f"lp{code}.csv")]) == code, err.getvalue()
        if code == 2:
            moved = "in another order" if header[0] == "d" else "other column names"
            assert (f"its header names ['{header.split(',')[0]}', '{header.split(',')[1]}'], "
                    "but the model was fit on ['waiting', 'duration'] (") in err.getvalue()
            assert moved in err.getvalue()
            assert (f"first difference: column 1, '{header.split(',')[0]}' where the fit had "
                    "'waiting'") in err.getvalue()
        else:
            scored = np.loadtxt(tmp_path / "lp0.csv", skiprows=1)
            assert np.isfinite(scored).all() and scored.mean() > -10


def test_cli_header_rules(tmp_path, capsys):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    np.testing.assert_array_equal(cli.read_data(path), [[1, 2], [3, 4]])
    assert "the first row ['a', 'b'] is read as a header, not data" in capsys.readouterr().err
    path.write_text("1,2\n3,4\n")
    np.testing.assert_array_equal(cli.read_data(path), [[1, 2], [3, 4]])
    assert "the first row is numeric, read as data" in capsys.readouterr().err
    np.testing.assert_array_equal(cli.read_data(path, header=True), [[3, 4]])
    path.write_text("a,b\n1,2\n")
    with pytest.raises(cli.UsageError, match="non-numeric value 'a' in data row 1, column 1"):
        cli.read_data(path, header=False)
    path.write_bytes("\ufeffwaiting,duration\n1,2\n".encode())  # Excel's "CSV UTF-8"
    x, names = cli.read_table(path)
    assert names == ["waiting", "duration"] and x.tolist() == [[1, 2]]
    # pandas' to_csv with its index: an unnamed first column of row numbers (it asked
    # for --header, which then fitted the index as a column)
    for content in (",waiting,duration\n7,1,2\n2,3,5\n9,4,4\n",  # (shuffled by a split)
                    ",0,1\n0,1.5,2\n1,3,5\n"):  # pd.DataFrame(array).to_csv()
        path.write_text(content)
        with pytest.raises(cli.UsageError, match=r"starts with an empty name, as pandas' to_csv "
                                                 r"writes for its row index"):
            cli.read_table(path)
    path.write_text(",waiting,duration\n0,1,2\n1,3,5\n3,4,4\n")
    with pytest.raises(cli.UsageError, match=r"column 1 has no name and holds increasing "
                                             r"whole numbers \(0, 1, ..., 3\): a row index"):
        cli.read_table(path, header=True)
    path.write_text(",waiting,duration\n0.5,1,2\n1,3,5\n")  # --header, not an index: data
    assert cli.read_table(path, header=True)[1] == ["", "waiting", "duration"]
    # A saved index under a name (it was fitted as a column): pd.read_csv of such a
    # file then to_csv(index=False) names it "Unnamed: 0" (any order), and a named
    # index counting the rows
    for content, shown in (("Unnamed: 0,waiting,duration\n7,1,2\n2,3,5\n9,4,4\n",
                            r"'Unnamed: 0'\) holds distinct whole numbers \(7, 2, ..., 9\)"),
                           ("id,waiting,duration\n1,1,2\n2,3,5\n3,4,4\n",
                            r"'id'\) holds distinct whole numbers \(1, 2, ..., 3\)")):
        path.write_text(content)
        with pytest.raises(cli.UsageError, match=shown + r": a row index that pandas' to_csv "
                                                         r"wrote, not data"):
            cli.read_table(path)
    path.write_text("id,waiting,duration\n3,1,2\n1,3,5\n2,4,4\n")  # not counting rows: data
    assert cli.read_table(path)[0][:, 0].tolist() == [3, 1, 2]
    path.write_text("Unnamed: 0,waiting,duration\n3,1,2\n3,3,5\n5,4,4\n")  # repeats: data
    assert cli.read_table(path)[0][:, 0].tolist() == [3, 3, 5]


def test_cli_score_errors_say_what_is_wrong(cli_run, tmp_path, capsys):
    out = cli_run[0]
    data = tmp_path / "x.csv"
    data.write_text("1,2\nnan,3\n")
    assert cli.main(["score", str(out), str(data), "--out", str(tmp_path / "s.csv")]) == 2
    assert "first rows [2]; numbered from 1). Remove or impute them before scoring" in (
        capsys.readouterr().err)
    broken = tmp_path / "broken"
    (broken / "saved_model").mkdir(parents=True)  # empty: an interrupted copy, say
    good = tmp_path / "good.csv"  # (the data are read first: their errors need no model)
    good.write_text("1,2\n0,3\n")
    for command in (["score", str(broken), str(good)], ["sample", str(broken), "-n", "3"]):
        assert cli.main(command + ["--out", str(tmp_path / "s.csv")]) == 2
        assert (f"{broken / 'saved_model'} is not a readable tfp-gauss SavedModel"
                in capsys.readouterr().err)
    (broken / "saved_model" / "saved_model.pb").write_bytes(b"not a protobuf")
    assert cli.main(["sample", str(broken), "-n", "3", "--out", str(tmp_path / "s.csv")]) == 2
    assert "is not a readable tfp-gauss SavedModel" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_fit_of_a_dataset_is_a_clear_type_error(moons):
    dataset = tf.data.Dataset.from_tensor_slices(moons[:64])
    with pytest.raises(TypeError, match=r"`x` must be an array of shape \[N, D\].*got a "
                                        r"tensorflow.*Dataset.*as_numpy_iterator"):
        tfp_gauss.fit_gaussianization_flow(dataset, steps=1)


def test_console_script_runs_without_tensorflow_log_lines(cli_run, tmp_path):
    out = cli_run[0]
    exe = pathlib.Path(sys.executable).parent / "tfp-gauss"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    env["PYTHONPATH"] = str(ROOT)  # the console script runs this checkout's code
    proc = subprocess.run([str(exe), "sample", str(out), "-n", "4", "--out",
                           str(tmp_path / "s.csv")], capture_output=True, text=True, env=env,
                          cwd=tmp_path, check=False)
    assert proc.returncode == 0
    assert proc.stdout == f"wrote 4 samples to {tmp_path / 's.csv'}\n"
    assert proc.stderr == ""  # no oneDNN/CUDA/absl start-up lines, no custom-gradient warnings
    assert np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1).shape == (4, 2)
    assert "{fit,sample,score}" in cli.build_parser().format_help()
    # The command imports TensorFlow only when it needs it: --help and a bad CSV answer
    # at once (they waited ~10 s for TensorFlow's import)
    (tmp_path / "bad.csv").write_text("a,b\n1,x\n")
    np.save(tmp_path / "dependent.npy", np.c_[np.arange(50.0), 2 * np.arange(50.0)])
    (tmp_path / "far.csv").write_text("0.1,0.2\n1e30,1e30\n")
    script = ("import sys; sys.argv = ['tfp-gauss']\n"  # (what the console script sets)
              "from tfp_gauss import cli\n"
              "rcs = [cli.main(['fit', d, '--out', 'run']) for d in ('bad.csv', "
              "'dependent.npy')]\n"
              "print(*rcs, 'tensorflow' in sys.modules)\n"
              # what needs the Keras classes registered (the lazy package did not, at first):
              # continuing a run, and rescoring rows beyond float32 from model.keras
              f"print(cli.main(['fit', '--out', 'more', '--init', {str(out)!r}, '--steps', '2',"
              " '--verbose', '0']))\n"
              f"print(cli.main(['score', {str(out)!r}, 'far.csv', '--out', 'far.npy']))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=tmp_path, check=False)
    assert proc.stdout.splitlines()[0] == "2 2 False", proc.stderr
    assert "non-numeric value 'x' in data row 1, column 2 ('b')" in proc.stderr
    assert "columns 1, 2 (numbered from 1) are linearly dependent" in proc.stderr
    codes = [line for line in proc.stdout.splitlines()[1:] if line.isdigit()]
    assert codes == ["0", "0"], proc.stdout + proc.stderr  # (a TypeError's 1, and 2, before)
    far = np.load(tmp_path / "far.npy")
    assert far.shape == (2,) and np.isfinite(far).all() and far[1] < -1e50


@pytest.mark.parametrize("value", ["-1", "wide", "nan"])
def test_cli_bad_scale_floor_is_a_usage_error(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fit", "--out", str(tmp_path / "run"), "--scale-floor", value])
    assert exit_info.value.code == 2
    assert f"expected 'auto' or a number >= 0; got {value!r}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag, value, expected", [
    ("--seed", "-1", "an integer >= 0"), ("--seed", "1.5", "an integer >= 0"),
    ("--seed", "-" + "9" * 30, "an integer >= 0"),
    ("--peak-lr", "-1", "a number > 0"), ("--peak-lr", "nan", "a number > 0"),
    ("--clip-norm", "-1", "a number >= 0"), ("--noise", "-0.1", "a number >= 0"),
    ("--noise", "inf", "a number >= 0"), ("--ema-momentum", "1.5", "a number >= 0 and < 1"),
])
def test_cli_bad_numbers_are_usage_errors(tmp_path, capsys, flag, value, expected):
    # Before: --seed -1 and --peak-lr -1 ended in a traceback (exit 1); --peak-lr nan
    # trained nothing and exited 0.
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fit", "--out", str(tmp_path / "run"), flag, value])
    assert exit_info.value.code == 2
    assert f"argument {flag}: expected {expected}; got {value!r}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
