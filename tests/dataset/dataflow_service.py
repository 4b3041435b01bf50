"""A local stand-in for the Dataflow service, for Beam's real DataflowRunner (``dataflow_endpoint`` on localhost, REST).

It answers the calls a submitted job gets (create, get, getMetrics, update to cancel) and records them. With
``run=True`` it also runs the job, as Dataflow's workers would: it takes the pipeline the runner staged
(``pipeline.pb``, from the storage emulator), points its environment (the worker image, which holds exactly this
project's pins) at this Python process, and runs it with Beam's portable FnApiRunner; the job's counters are then
served as Dataflow serves them (tentative and committed). Otherwise the job stays in ``hold`` until cancelled.
"""

from __future__ import annotations

import json
import threading

from google.cloud.dataflow_v1beta3 import JobState
from json_server import JsonServer

JOB_ID = "2030-01-01_00_00_00-1"
CANCEL = (JobState.JOB_STATE_CANCELLED.value, "JOB_STATE_CANCELLED")  # the REST body's enums are numbers


class FakeDataflow(JsonServer):
    def __init__(self, run: bool = True, hold: str = "JOB_STATE_RUNNING", end: str | None = None):
        self.requests: list[tuple[str, str, dict]] = []
        self.state = "JOB_STATE_PENDING"
        self.hold, self.end, self.run = hold, end, run
        self.metrics: list[dict] = []
        self.error: BaseException | None = None
        self.runner: threading.Thread | None = None
        super().__init__()
        self.endpoint = f"http://localhost:{self.httpd.server_address[1]}"

    def handle(self, method: str, path: str, body: bytes):
        request = json.loads(body) if body else {}
        self.requests.append((method, path, request))
        return 200, self.answer(method, path.split("?")[0], request), {}

    def answer(self, method: str, path: str, request: dict) -> dict:
        if path.endswith("/metrics"):
            return {"metrics": self.metrics}
        if method == "POST" and path.endswith("/jobs"):  # create
            self.state = self.hold
            if self.run:
                options = request["environment"]["sdkPipelineOptions"]["options"]
                self.runner = threading.Thread(target=self._run, args=(options["staging_location"],), daemon=True)
                self.runner.start()
            elif self.end:
                self.state = self.end
            return self.job(request)
        if method == "PUT" and request.get("requestedState") in CANCEL:
            self.state = "JOB_STATE_CANCELLED"
        return self.job(request)

    def job(self, request: dict) -> dict:
        return {"id": JOB_ID, "name": request.get("name", ""), "currentState": self.state}

    def cancels(self) -> int:
        return sum(1 for method, _, body in self.requests
                   if method == "PUT" and body.get("requestedState") in CANCEL)

    def _run(self, staging: str) -> None:
        from apache_beam.metrics.metric import MetricsFilter
        from apache_beam.options.pipeline_options import PipelineOptions
        from apache_beam.portability.api import beam_runner_api_pb2
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner
        from google.cloud.storage import Client

        try:
            bucket, _, prefix = staging.removeprefix("gs://").partition("/")
            graph = Client().bucket(bucket).blob(f"{prefix}/pipeline.pb").download_as_bytes()
            pipeline = beam_runner_api_pb2.Pipeline.FromString(graph)
            for environment in pipeline.components.environments.values():
                assert environment.urn == "beam:env:docker:v1"  # the worker image
                environment.urn, environment.payload = "beam:env:embedded_python:v1", b""
            result = FnApiRunner().run_via_runner_api(pipeline, PipelineOptions(flags=[]))
            result.wait_until_finish()
            for counter in result.metrics().query(MetricsFilter().with_namespace("detector"))["counters"]:
                for tentative in (True, False):
                    context = {"namespace": "detector", "step": counter.key.step} | (
                        {"tentative": "true"} if tentative else {})
                    self.metrics.append({"name": {"origin": "user", "name": counter.key.metric.name,
                                                  "context": context},
                                         "scalar": counter.attempted if tentative else counter.committed})
            self.state = self.end or "JOB_STATE_DONE"
        except BaseException as err:  # the test reads it
            self.error = err
            self.state = "JOB_STATE_FAILED"
