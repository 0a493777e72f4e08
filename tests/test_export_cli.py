"""SavedModel export, Keras save/load, and the tfp-gauss command."""

import json
import os
import pathlib
import subprocess
import sys

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
    flow = tfp_gauss.fit_rbig(moons, n_layers=3, n_components=4, random_state=0)
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
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tmp_path)
    out = np.load(tmp_path / "out.npz")
    y = (x - np.array([1.0, -2.0], np.float32)) / np.array([2.0, 0.5], np.float32)
    expected = flow.log_prob(y).numpy() - np.log(2.0 * 0.5)
    np.testing.assert_allclose(out["lp"], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["z"], flow.bijector.bijector.forward(y).numpy(),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out["x_back"], x, rtol=1e-4, atol=1e-4)
    assert out["s"].shape == (7, 2) and np.isfinite(out["s"]).all()
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


def test_cli_fit_sample_score(tmp_path):
    out = tmp_path / "run"
    assert cli.main(["fit", "--out", str(out), "--steps", "20", "--layers", "2",
                     "--components", "3", "--verbose", "0"]) == 0
    for name in ("saved_model", "model.keras", "report.json", "training.png", "samples.png"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["init"] == "rbig" and report["data"]["train_rows"] == 2400
    assert np.isfinite(report["results"]["validation_nll"])
    assert set(report["versions"]) >= {"tensorflow", "tensorflow_probability", "keras"}
    assert cli.main(["sample", str(out), "-n", "11", "--out", str(tmp_path / "s.csv")]) == 0
    samples = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    assert samples.shape == (11, 2)
    assert cli.main(["score", str(out), str(tmp_path / "s.csv"),
                     "--out", str(tmp_path / "scores.csv")]) == 0
    scores = np.loadtxt(tmp_path / "scores.csv", delimiter=",", skiprows=1)
    assert scores.shape == (11,) and np.isfinite(scores).all()
    # the served density is in data units: equal to the report's standardization
    # applied to the Keras model
    model = keras.models.load_model(out / "model.keras")
    shift = np.array(report["standardization"]["shift"])
    scale = np.array(report["standardization"]["scale"])
    expected = model.log_prob(((samples - shift) / scale).astype(np.float32)).numpy()
    np.testing.assert_allclose(scores, expected - np.log(scale).sum(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("content,match", [
    (None, "not found"),
    ("a,b\n1,2\nx,3\n", "non-numeric value 'x' in data row 2, column 1"),
    ("1,2\n3\n", "ragged rows: line 2 has 1 fields"),
    ("1,2\nnan,3\n4,5\n", "1 of 3 rows holding NaN"),
])
def test_cli_bad_data_exits_2_and_leaves_the_output_dir(tmp_path, capsys, content, match):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    data = tmp_path / "data.csv"
    if content is not None:
        data.write_text(content)
    assert cli.main(["fit", str(data), "--out", str(out), "--steps", "2", "--verbose", "0"]) == 2
    assert match in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]


def test_cli_failure_during_fit_keeps_the_previous_run(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure while saving")

    monkeypatch.setattr(tfp_gauss, "export_saved_model", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        cli.main(["fit", "--out", str(out), "--steps", "2", "--layers", "1",
                  "--components", "2", "--verbose", "0"])
    assert (out / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_console_script_is_installed():
    exe = pathlib.Path(sys.executable).parent / "tfp-gauss"
    text = subprocess.run([str(exe), "--help"], check=True, capture_output=True,
                          text=True).stdout
    assert "fit" in text and "sample" in text and "score" in text
