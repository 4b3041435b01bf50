"""`predict --endpoint`: the real google-cloud-aiplatform client (REST) against the local prediction stand-in, whose
``:predict`` runs the demo model's real serving signature; boxes checked against local `predict` on the same images."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from google.auth.credentials import AnonymousCredentials
from launch_servers import PREDICT_PAYLOAD_LIMIT, TokenServer, experiment_outputs, service_account_key

from jobs.errors import UsageError
from jobs.launch.context import REPO_ROOT
from jobs.launch.predictions import INSTANCE_OVERHEAD_BYTES, JSON_OVERHEAD_BYTES, EndpointPredictor, batches
from jobs.stack import StackOutputs

pytest_plugins = ["launch_servers", "evaluation_fixtures"]

STACK = StackOutputs.from_outputs(experiment_outputs(), "test")
PARENT = "projects/acme-ml/locations/us-central1"
MODEL = f"{PARENT}/models/77"
ENDPOINT = f"{PARENT}/endpoints/55"
PRESET, INPUT_SIZE = "retinanet-tiny-128", 128  # the demo's preset


def deploy(server, preset: str | None = PRESET) -> None:
    """The stand-in's state after `models upload` and `endpoints deploy`: the model, its preset label, an endpoint."""
    model = {"name": MODEL, "versionId": "1", "versionAliases": ["default"],
             "labels": {"experiment": "exp-prints", **({"preset": preset} if preset else {})}}
    server.models[MODEL], server.versions[MODEL] = model, [model]
    server.endpoints[ENDPOINT] = {"name": ENDPOINT, "displayName": "exp-prints", "trafficSplit": {"1": 100},
                                  "deployedModels": [{"id": "1", "model": f"{MODEL}@1"}]}


def test_requests_are_batched_under_the_limit():
    limit = JSON_OVERHEAD_BYTES + 3 * (100 + INSTANCE_OVERHEAD_BYTES)
    assert batches([100] * 7, limit) == [[0, 1, 2], [3, 4, 5], [6]]
    assert batches([100, 100, 100, 100], limit, max_instances=2) == [[0, 1], [2, 3]]
    assert batches([], limit) == []


def test_the_endpoint_and_input_size_come_from_the_deployed_model(prediction_server):
    deploy(prediction_server)
    for name in ("exp-prints", "55", ENDPOINT):
        remote = EndpointPredictor(STACK, name, api_endpoint=prediction_server.url, credentials=AnonymousCredentials())
        assert (remote.endpoint, remote.input_size) == (ENDPOINT, INPUT_SIZE)
    assert EndpointPredictor(STACK, "55", "retinanet-mobilenet-640", api_endpoint=prediction_server.url,
                             credentials=AnonymousCredentials()).input_size == 640
    deploy(prediction_server, preset=None)
    with pytest.raises(UsageError, match="--preset"):
        EndpointPredictor(STACK, "55", api_endpoint=prediction_server.url, credentials=AnonymousCredentials())
    with pytest.raises(UsageError, match="endpoints list"):
        EndpointPredictor(STACK, "other", api_endpoint=prediction_server.url, credentials=AnonymousCredentials())


@pytest.fixture(scope="module")
def images(demo_run, tmp_path_factory):
    """Validation images of the demo: one as drawn (128 px), three enlarged (wide JPEG, tall PNG, wide PNG) so that
    the client shrinks them, by a different factor on each."""
    from PIL import Image

    entries = json.loads((demo_run.paths["prepared data"] / "val_coco.json").read_text())["images"][:4]
    sources = [demo_run.paths["synthetic images"] / entry["file_name"] for entry in entries]
    folder = tmp_path_factory.mktemp("remote-images")
    paths = [sources[0]]
    for source, (size, name) in zip(sources[1:], [((640, 480), "wide.jpg"), ((300, 500), "tall.png"),
                                                  ((900, 500), "wider.png")], strict=True):
        with Image.open(source) as image:
            image.convert("RGB").resize(size, Image.BILINEAR).save(folder / name)
        paths.append(folder / name)
    return paths


@pytest.fixture(scope="module")
def serving(demo_run):
    from jobs.runtime.serve import Model

    return Model(str(demo_run.paths["exported model"]))


def assert_same_boxes(remote, local, images):
    """Every confident local box (score >= 0.5) has a remote box of its class within 2 px of the image the endpoint
    saw, and the other way round."""
    from PIL import Image

    scales = {}
    for path in images:
        with Image.open(path) as image:
            scales[str(path)] = min(1.0, INPUT_SIZE / max(image.size))
    for mine, theirs in ((local, remote), (remote, local)):
        for box in (d for d in mine if d.score >= 0.5):
            scale = scales[box.image]
            candidates = [d for d in theirs if d.image == box.image and d.class_id == box.class_id]
            assert candidates, f"no {box.label} on {box.image}"
            error = min(max(abs(a - b) for a, b in zip((d.xmin, d.ymin, d.xmax, d.ymax),
                                                       (box.xmin, box.ymin, box.xmax, box.ymax), strict=True))
                        for d in candidates)
            assert error * scale <= 2.0, (box, candidates)
    assert sum(d.score >= 0.5 for d in local) >= 3  # the check compared something


@pytest.mark.slow
def test_endpoint_boxes_match_local_predict_in_original_pixels(demo_run, images, serving, prediction_server,
                                                               tmp_path):
    from jobs.runtime.predict import Predictor, predict_paths

    deploy(prediction_server)
    prediction_server.serving = serving
    limit = 12_000  # about two of these images a request, so that batching shows
    remote = EndpointPredictor(STACK, "exp-prints", api_endpoint=prediction_server.url,
                               credentials=AnonymousCredentials(), limit_bytes=limit)
    found = predict_paths(remote, images, tmp_path / "remote")
    expected = predict_paths(Predictor(demo_run.paths["exported model"]), images, tmp_path / "local")
    assert_same_boxes(found.detections, expected.detections, images)
    assert len(prediction_server.predict_bodies) == remote.requests >= 2
    assert max(prediction_server.predict_bodies) <= limit
    assert sorted(p.name for p in (tmp_path / "remote").iterdir() if p.suffix in {".jpg", ".png"}) == \
        sorted(p.name for p in images)
    rows = list(csv.DictReader((tmp_path / "remote" / "detections.csv").open()))
    assert [float(r["xmin"]) for r in rows] == [d.xmin for d in found.detections]
    assert json.loads((tmp_path / "remote" / "detections.json").read_text())[0]["label"] == found.detections[0].label


@pytest.mark.slow
def test_the_cli_predicts_from_the_endpoint(images, serving, prediction_server, tmp_path):
    deploy(prediction_server)
    prediction_server.serving = serving
    token = TokenServer()
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(experiment_outputs()))
    env = dict(os.environ, DETECTOR_VERTEX_ENDPOINT=prediction_server.url, COLUMNS="200",
               GOOGLE_APPLICATION_CREDENTIALS=service_account_key(
                   tmp_path / "key.json", "me@acme-ml.iam.gserviceaccount.com", f"{token.url}/token"))
    try:
        done = subprocess.run([sys.executable, "-m", "jobs", "predict", "--endpoint", "55",
                               "--stack-outputs", str(outputs), *map(str, images), "--out", str(tmp_path / "out")],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    finally:
        token.close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"endpoint {ENDPOINT}: images shrunk to fit 128 px" in done.stdout
    assert "detections.csv" in done.stdout and (tmp_path / "out" / "detections.json").exists()
    assert max(prediction_server.predict_bodies) <= PREDICT_PAYLOAD_LIMIT
