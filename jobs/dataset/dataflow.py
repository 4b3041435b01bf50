"""``data prepare --engine dataflow``: the Beam pipeline of ``beam.py`` as a Dataflow job of an experiment stack.

The job runs in the stack's region, stages and keeps its temporary files under the stack's bucket, and its workers
run as the stack's Dataflow worker account, on the platform's subnetwork, without public IP addresses, from the
worker image (``images/dataflow-worker``: Beam's SDK container with the pinned dependencies and the ``jobs`` modules
the workers import). The jobs go to the workers as a JSONL file under the temporary location, read with
``ReadFromText``: the job's graph stays small however many images there are ("Request quotas", Dataflow docs: the
service accepts job requests of up to 20 MB).

Planning contacts nothing: ``--dry-run`` shows the options the job is created with. A run (``run_job``) writes the
jobs file, creates the job, follows it (its state, and the pipeline's counters through the Dataflow API: images read,
findings) until it ends, and reads back what each shard's writer left under the job's work prefix; the caller then
publishes the dataset (the shards copied within Cloud Storage, nothing downloaded) and the work prefix is removed,
whether the job succeeded, failed or was cancelled. Nothing here imports TensorFlow or the CLI.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from jobs.dataset.parallel import Progress
from jobs.dataset.shards import ShardTask, Written
from jobs.errors import DetectorError, UsageError
from jobs.stack import StackOutputs

if TYPE_CHECKING:
    from apache_beam.runners.dataflow.dataflow_runner import DataflowPipelineResult

    from jobs.dataset.beam import Job
    from jobs.dataset.pipeline import Plan

WORKER_IMAGE = "dataflow-worker"  # images/dataflow-worker, pushed to the platform's repository
DEFAULT_MACHINE_TYPE = "n2-standard-4"  # a choice of this tool (4 vCPUs, 16 GB); --machine-type picks another
DEFAULT_MAX_WORKERS = 10
JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")  # Dataflow job names (Beam's own check)
POLL_S = 10.0  # between two looks at the job's state and counters
CANCEL_WAIT_S = 300.0  # how long a cancelled job is waited for before its work prefix is removed anyway
# The predefined roles that read objects (storage.objects.get), from "IAM roles for Cloud Storage"
# (cloud.google.com/storage/docs/access-control/iam-roles): what a bucket of another project must grant the workers.
OBJECT_READERS = frozenset({"roles/storage.admin", "roles/storage.objectAdmin", "roles/storage.objectUser",
                            "roles/storage.objectViewer", "roles/storage.legacyObjectOwner",
                            "roles/storage.legacyObjectReader"})
EVERYONE = frozenset({"allUsers", "allAuthenticatedUsers"})


@dataclass(frozen=True)
class DataflowPrices:
    """Dataflow batch prices, USD, us-central1, as Google's own load tests price their Dataflow jobs:
    GoogleCloudPlatform/DataflowTemplates, it/google-cloud-platform/src/main/java/org/apache/beam/it/gcp/
    LoadTestBase.java (commit 093ee09c, read 2026-12-06), "Dataflow resources cost factors (showing us-central-1
    pricing). See https://cloud.google.com/dataflow/pricing#pricing-details"; Apache Beam's load tests
    (apache_beam/testing/load_tests/dataflow_cost_consts.py) hold the same figures. They are that code's, not the
    pricing page's: its stored copies hold no figures. Other regions cost differently."""

    vcpu_hour: float = 0.056
    memory_gb_hour: float = 0.003557
    disk_gb_hour: float = 0.000054  # standard Persistent Disk
    shuffle_gb: float = 0.011  # Dataflow Shuffle, per GB of shuffle data processed


PRICES = DataflowPrices()
PRICES_SOURCE = ("us-central1 batch prices as written in Google's DataflowTemplates load tests (LoadTestBase.java, "
                 "crediting cloud.google.com/dataflow/pricing; read 2026-12-06); other regions differ")
# A batch worker's boot disk with Dataflow Shuffle, the batch default ("Configure Dataflow worker VMs",
# "Dataflow shuffle for batch jobs").
BOOT_DISK_GB = 25
MACHINE_SHAPES = {"n2-standard-4": (4, 16)}  # vCPUs and GB of memory of the machine types priced here
# Beam's PipelineState names of the Dataflow job states after which nothing runs any more
ENDED = frozenset({"DONE", "FAILED", "CANCELLED", "DRAINED", "UPDATED", "STOPPED"})
STAGE = "dataflow"


class DataflowJobFailed(DetectorError):
    """The Dataflow job ended without success; nothing was published."""


class DataflowJobCancelled(DetectorError):
    """The user cancelled the Dataflow job; nothing was published."""

    exit_code = 130


@dataclass(frozen=True)
class DataflowPlan:
    """A Dataflow job of the stack, before anything is contacted."""

    stack: StackOutputs
    job_name: str
    out: str
    max_workers: int = DEFAULT_MAX_WORKERS
    machine_type: str = DEFAULT_MACHINE_TYPE
    worker_image: str = ""

    @classmethod
    def make(cls, stack: StackOutputs, out: str, max_workers: int = DEFAULT_MAX_WORKERS,
             machine_type: str = DEFAULT_MACHINE_TYPE, job_name: str | None = None,
             at: datetime | None = None) -> DataflowPlan:
        """Checks what the job would be refused for before it is submitted: an older stack, a bad job name."""
        missing = [name for name, value in (("dataflowServiceAccount", stack.dataflow_service_account),
                                            ("dataflowSubnetwork", stack.dataflow_subnetwork)) if not value]
        if missing:
            raise UsageError(f"stack {stack.experiment} has no {' and '.join(missing)} output (made before Dataflow "
                             "was supported): run `pulumi up` on the platform stack, then on this experiment stack")
        if not out.startswith("gs://"):
            raise UsageError(f"--engine dataflow writes to Cloud Storage: give --out gs://BUCKET/PREFIX (for example "
                             f"{stack.data_uri('NAME')}), not {out}")
        if max_workers < 1:
            raise UsageError(f"--max-workers must be at least 1, not {max_workers}")
        name = job_name or default_job_name(stack.experiment, at)
        if not JOB_NAME.match(name):
            raise UsageError(f"Dataflow job name {name!r}: lowercase letters, digits and '-', starting with a letter, "
                             "at most 63 characters")
        return cls(stack, name, out.rstrip("/"), max_workers, machine_type,
                   stack.image(WORKER_IMAGE, worker_tag()))

    @property
    def temp_location(self) -> str:
        """Beam's and Dataflow's temporary files, and this job's jobs file, shards and outcomes."""
        return f"gs://{self.stack.bucket}/dataflow/temp"

    @property
    def staging_location(self) -> str:
        return f"gs://{self.stack.bucket}/dataflow/staging"

    @property
    def work_prefix(self) -> str:
        """Where this job writes before the dataset is published to ``out``."""
        return f"{self.temp_location}/{self.job_name}"

    @property
    def jobs_uri(self) -> str:
        return f"{self.work_prefix}/jobs.jsonl"

    @property
    def labels(self) -> dict[str, str]:
        """As the training jobs': the experiment (billing adds up per stack) and what the job does."""
        return {"experiment": self.stack.experiment, "kind": "prepare", "run": self.job_name}

    def options(self) -> dict[str, Any]:
        """Beam's pipeline options of the job (``PipelineOptions(**options)``)."""
        return {
            "runner": "DataflowRunner",
            "project": self.stack.project,
            "region": self.stack.region,
            "job_name": self.job_name,
            "temp_location": self.temp_location,
            "staging_location": self.staging_location,
            "service_account_email": self.stack.dataflow_service_account,
            "subnetwork": self.stack.dataflow_subnetwork,
            "use_public_ips": False,
            "labels": [f"{key}={value}" for key, value in self.labels.items()],
            "max_num_workers": self.max_workers,
            "machine_type": self.machine_type,
            # The workers' Python: Beam's SDK, the pinned dependencies and the `jobs` modules are in the image,
            # so nothing is installed when a worker starts (it could not: no public IP, no NAT).
            "sdk_container_image": self.worker_image,
            "sdk_location": "container",
        }

    def summary(self) -> str:
        return (f"Dataflow job {self.job_name} in {self.stack.region}: up to {self.max_workers} x "
                f"{self.machine_type}, writing {self.out}")

    def price(self, size_bytes: int | None = None) -> str:
        """The job's price, as far as it can be told before it runs: its workers by the hour (how long they run is
        not known), and Dataflow Shuffle of the records (the images' bytes, grouped by shard) when their size is."""
        shape = MACHINE_SHAPES.get(self.machine_type)
        if shape is None:
            workers = f"workers' price unknown ({self.machine_type} is not priced here)"
        else:
            vcpus, memory = shape
            hourly = vcpus * PRICES.vcpu_hour + memory * PRICES.memory_gb_hour + BOOT_DISK_GB * PRICES.disk_gb_hour
            workers = (f"up to ${self.max_workers * hourly:.2f} an hour of workers ({self.max_workers} x "
                       f"${hourly:.3f})")
        if size_bytes is None:
            shuffle = f"Dataflow Shuffle at ${PRICES.shuffle_gb}/GB of the images' bytes"
        else:
            gigabytes = size_bytes / 1e9
            shuffle = f"about ${gigabytes * PRICES.shuffle_gb:.2f} of Dataflow Shuffle ({gigabytes:.2f} GB)"
        return f"{workers} while the job runs, plus {shuffle}"

    def request(self) -> dict[str, Any]:
        """What ``--dry-run`` prints: the pipeline options the job is created with, and where it writes."""
        return {"options": self.options(), "jobs": self.jobs_uri, "work": self.work_prefix, "out": self.out}


def default_job_name(experiment: str, at: datetime | None = None) -> str:
    """``EXPERIMENT-prepare-UTCTIME-XXXX``: four random hex digits, so that two runs started in the same second get
    jobs and work folders of their own; the experiment is shortened to keep the name within 63 characters."""
    tail = f"-prepare-{(at or datetime.now(UTC)).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    return experiment.lower()[: 63 - len(tail)].rstrip("-") + tail


def workers_may_read(plan: DataflowPlan, images: str) -> str | None:
    """None when the job's workers may read the images as far as can be seen from here; else why they may not, with
    the grant that lets them. Their worker role reads every bucket of the stack's project (infra: experiment_stack);
    a bucket of another project must give their account (or everyone) a role that reads objects in its IAM policy. A
    group's or that project's grant cannot be seen here, so this is a warning for the confirmation, not a refusal."""
    from google.api_core.exceptions import Forbidden, NotFound, Unauthorized

    from jobs.dataset.gcs import client, split_uri

    bucket = split_uri(images)[0]
    storage = client()
    try:
        if storage.get_bucket(bucket).project_number == storage.get_bucket(plan.stack.bucket).project_number:
            return None
    except (Forbidden, Unauthorized, NotFound):
        pass  # the bucket's project cannot be told (storage.buckets.get): its policy may still say
    member = f"serviceAccount:{plan.stack.dataflow_service_account}"
    grant = (f"gcloud storage buckets add-iam-policy-binding gs://{bucket} --member={member} "
             "--role=roles/storage.objectViewer")
    try:
        policy = storage.bucket(bucket).get_iam_policy(requested_policy_version=3)
    except (Forbidden, Unauthorized, NotFound) as err:
        return (f"the workers' access to gs://{bucket} could not be checked ({err.message}; reading its IAM policy "
                f"needs storage.buckets.getIamPolicy). Without a role that reads objects there, the job fails at its "
                f"first image: {grant}")
    for binding in policy.bindings:
        if binding["role"] in OBJECT_READERS and not binding.get("condition") \
                and ({member} | EVERYONE) & set(binding["members"]):
            return None
    return (f"gs://{bucket} is not in the stack's project and its IAM policy gives the workers "
            f"({member.removeprefix('serviceAccount:')}) no role that reads objects: unless a group or a role on its "
            f"project does, the job fails at its first image. Grant it: {grant}")


def worker_tag() -> str:
    """The worker image's tag: the content hash of its build context, as for the trainer and evaluator."""
    from jobs.launch.context import build_context

    return build_context(WORKER_IMAGE).tag


def write_jobs(uri: str, jobs: list[Job]) -> None:
    """The jobs file the pipeline reads (``beam.read_jobs``), one object written at once."""
    from jobs.dataset.beam import job_line
    from jobs.dataset.gcs import write_object

    write_object(uri, "".join(job_line(job) + "\n" for job in jobs).encode())


def submit(plan: DataflowPlan, jobs: list[Job], classes: dict[str, int], paths: list[str],
           **overrides: Any) -> DataflowPipelineResult:
    """Write the jobs file, then create the Dataflow job (not waiting for it); ``overrides`` are further pipeline
    options (tests: ``dataflow_endpoint``, ``no_auth``)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from jobs.dataset.beam import build, quiet_beam, read_jobs

    write_jobs(plan.jobs_uri, jobs)
    pipeline = beam.Pipeline(options=PipelineOptions(flags=[], **(plan.options() | overrides)))  # not sys.argv
    build(read_jobs(pipeline, plan.jobs_uri), classes, paths, f"{plan.work_prefix}/outcomes")
    with quiet_beam():
        result = pipeline.run()
    return cast("DataflowPipelineResult", result)  # the DataflowRunner's


@dataclass(frozen=True)
class Finished:
    """A finished job's shards, as the local engine's ``write`` returns them, and the objects that hold them."""

    written: Written
    shards: dict[str, tuple[str, int]]  # file name in the dataset -> (its object's URI, bytes)


@contextlib.contextmanager
def run_job(plan: DataflowPlan, planned: Plan, num_shards: int | None, shard_bytes: int,
            progress: Progress | None = None, cancel: Callable[[], bool] = lambda: True, poll_s: float = POLL_S,
            **overrides: Any) -> Iterator[Finished]:
    """Run the plan's images as a Dataflow job and yield its shards; the job's work prefix is removed when the
    caller is done with them, or when anything fails. ``cancel`` is asked on Ctrl-C (True: cancel the job)."""
    from jobs.dataset.beam import plan_jobs
    from jobs.dataset.gcs import delete_prefix
    from jobs.dataset.shards import collect, shard_tasks

    tasks = shard_tasks(f"{plan.work_prefix}/shards", planned.splits, num_shards, shard_bytes, plan.max_workers)
    jobs = plan_jobs(tasks, planned.splits)
    try:
        result = submit(plan, jobs, planned.classes, [task.path for task in tasks], **overrides)
        follow(plan, result, len(jobs), progress, cancel, poll_s)
        outcomes = read_outcomes(plan, len(tasks))
        yield Finished(collect(planned.splits, tasks, outcomes), shard_objects(tasks))
    finally:
        delete_prefix(plan.work_prefix)  # best effort: a failure here leaves the job's own temporary files only


def follow(plan: DataflowPlan, result: DataflowPipelineResult, images: int, progress: Progress | None,
           cancel: Callable[[], bool], poll_s: float = POLL_S) -> None:
    """Until the job ends: its progress (images read of ``images``, findings so far) at every look. Ctrl-C asks
    ``cancel``: yes cancels the job (DataflowJobCancelled once it has stopped), no follows it on."""
    while True:
        try:
            state = str(result.state)
            if state in ENDED:
                break
            if progress:
                read, findings = counters(result)
                progress(f"{STAGE} {state.lower()}, {findings} findings", read, images)
            time.sleep(poll_s)
        except KeyboardInterrupt:
            if cancel():
                _cancel(plan, result, poll_s)
    if state != "DONE":
        raise DataflowJobFailed(f"Dataflow job {plan.job_name} ended {state}; nothing was published. Its log: "
                                f"{console_url(plan, result.job_id())}")  # type: ignore[no-untyped-call]
    if progress:
        read, findings = counters(result)
        progress(f"{STAGE} done, {findings} findings", read, images)


def _cancel(plan: DataflowPlan, result: DataflowPipelineResult, poll_s: float) -> None:
    """Cancel the job and wait (a while) until it has stopped, so that its workers write nothing after."""
    result.cancel()  # type: ignore[no-untyped-call]
    deadline = time.monotonic() + CANCEL_WAIT_S
    while str(result.state) not in ENDED and time.monotonic() < deadline:
        time.sleep(poll_s)
    raise DataflowJobCancelled(f"Dataflow job {plan.job_name} cancelled ({result.state}); nothing was published "
                               "and the previous output is as it was")


def counters(result: DataflowPipelineResult) -> tuple[int, int]:
    """The pipeline's counters so far, summed over its steps: images read, findings (Beam's tentative values,
    which Dataflow reports while the job runs; the committed ones when it has none)."""
    from apache_beam.metrics.metric import MetricsFilter

    from jobs.dataset.beam import COUNTERS, FINDINGS, IMAGES

    totals = {IMAGES: 0, FINDINGS: 0}
    found = result.metrics().query(MetricsFilter().with_namespace(COUNTERS))  # type: ignore[no-untyped-call]
    for counter in found["counters"]:
        if counter.key.metric.name in totals:
            totals[counter.key.metric.name] += counter.attempted or counter.committed or 0
    return totals[IMAGES], totals[FINDINGS]


def console_url(plan: DataflowPlan, job_id: str) -> str:
    return (f"https://console.cloud.google.com/dataflow/jobs/{plan.stack.region}/{job_id}"
            f"?project={plan.stack.project}")


def read_outcomes(plan: DataflowPlan, shards: int) -> list[Any]:
    """What each shard's writer left (``beam.WriteShard``), read with the storage client."""
    from jobs.dataset.beam import outcome_path, parse_outcome
    from jobs.dataset.gcs import client, split_uri

    storage = client()
    outcomes = []
    for shard in range(shards):
        bucket, name = split_uri(outcome_path(f"{plan.work_prefix}/outcomes", shard))
        outcomes.append(parse_outcome(storage.bucket(bucket).blob(name).download_as_bytes()))
    return outcomes


def shard_objects(tasks: list[ShardTask]) -> dict[str, tuple[str, int]]:
    """Each shard's object and size, listed once."""
    from jobs.dataset.gcs import client, split_uri

    folder = tasks[0].path.rpartition("/")[0]
    bucket, prefix = split_uri(folder)
    sizes = {blob.name: blob.size for blob in client().list_blobs(bucket, prefix=f"{prefix}/")}
    found = {}
    for task in tasks:
        name = task.path.rpartition("/")[2]
        if f"{prefix}/{name}" not in sizes:
            raise DataflowJobFailed(f"the job ended DONE but wrote no {task.path}; nothing was published")
        found[name] = (task.path, sizes[f"{prefix}/{name}"])
    return found

