"""A TPU run computes in bfloat16 (Model Garden's mixed_bfloat16 policy), any other in float32."""

from __future__ import annotations

import pytest
import tensorflow as tf
import tf_keras

from jobs.runtime import devices
from jobs.runtime.experiment import build_experiment, make_spec
from jobs.runtime.train import build_trainer


@pytest.fixture
def global_policy():
    yield
    tf_keras.mixed_precision.set_global_policy("float32")  # the policy is global: later tests start from float32


@pytest.mark.parametrize(("device", "compute", "variables"), [("tpu", "bfloat16", "float32"),
                                                              ("cpu", "float32", "float32")])
def test_the_built_model_computes_in_the_precision_of_the_device(prepared, tmp_path, global_policy, device,
                                                                 compute, variables):
    if device == "cpu":  # what a TPU run in the same process would leave behind
        tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
    spec = make_spec("retinanet-tiny-128", str(prepared), 10, 2, None, devices.precision_for(device))
    params = build_experiment(spec)
    assert params.runtime.mixed_precision_dtype == compute
    model = build_trainer(params, tf.distribute.OneDeviceStrategy("/cpu:0"), str(tmp_path)).model
    assert model.compute_dtype == compute
    assert model.variable_dtype == variables
    outputs = model(tf.zeros([1, 128, 128, 3], compute), training=False)
    assert {level.dtype.name for level in outputs["cls_outputs"].values()} == {compute}
