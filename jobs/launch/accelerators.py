"""Registered Vertex AI accelerators: machine shapes, where they exist, and what they cost.

Availability: Cloud TPU "TPU regions and zones" and Vertex AI "Locations" pages, read 2026-11-26 (Vertex
offers TPU training in fewer regions than Compute Engine; GPUs are listed for the main training regions).
Prices: USD per hour, us-central1. A job's bill is its accelerator (the GCP billing catalogue snapshot in
shared/REFERENCE.md, 2025 or later; H100: Vertex AI's training price) plus the Vertex AI training price of its
machine type (``MACHINE_PRICES``); a part whose price is not in the documents is None, and the estimate then says
"price unknown", never a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jobs.errors import UsageError

PRICES_AS_OF = ("accelerators: 2025 GCP billing catalogue snapshot (shared/REFERENCE.md), H100 from Vertex AI's "
                "training price (its pricing page as transcribed 2026-10-07); machines: Vertex AI pricing page, "
                "looked up 2026-12-06; us-central1")
AVAILABILITY_AS_OF = "2026-11-26, Cloud TPU regions-and-zones and Vertex AI locations pages"

# Vertex AI's custom-training price of each machine type (the host, with Vertex AI's training charge), USD per hour
# in us-central1: (on-demand, Spot). Source: "Vertex AI pricing", https://cloud.google.com/vertex-ai/pricing (now
# https://cloud.google.com/products/gemini-enterprise-agent-platform/pricing), looked up 2026-12-06 with the search
# tool: corpora "docs" and "pages" (the page in English, pt-BR, zh-CN, zh-TW, pl, hi, nl-NL; queries on its
# custom-trained models tables, these machine types, ct5lp-hightpu, Spot), find_string on public repositories, and
# the one transcription of the page found (api-evangelist/google-vertex-ai plans/google-vertex-ai-plans-pricing.yml,
# "every price_text was found verbatim in the fetched page text", read 2026-10-07). The stored copies of the page
# hold its opening (AutoML node-hour prices) only, and the transcription gives one machine, n1-standard-4
# ("$0.21849885 / 1 hour"), which no job here uses. So none of these is known: None, which makes an estimate
# "price unknown". Fill them in from that page, with its date, to make estimates the whole bill.
MACHINE_PRICES: dict[str, tuple[float | None, float | None]] = {
    "cloud-tpu": (None, None),
    "ct5lp-hightpu-1t": (None, None),
    "ct5lp-hightpu-4t": (None, None),
    "ct5lp-hightpu-8t": (None, None),
    "n1-standard-8": (None, None),
    "g2-standard-8": (None, None),
    "a2-highgpu-1g": (None, None),
    "a3-highgpu-1g": (None, None),
}

GPU_REGIONS = frozenset({"us-central1", "us-east1", "us-east4", "us-west1", "us-west4", "europe-west1",
                         "europe-west4", "asia-east1", "asia-southeast1"})


@dataclass(frozen=True)
class Accelerator:
    name: str
    device: str  # what the runtime's --device takes: tpu, gpu or cpu
    machine_type: str
    accelerator_type: str | None  # aiplatform_v1 AcceleratorType name
    accelerator_count: int
    tpu_topology: str | None
    cores: int  # replicas the global batch is split over, per worker
    max_replicas: int
    regions: frozenset[str]
    usd_per_hour: float | None  # the accelerator alone (0 for none); None: no price kept
    spot_usd_per_hour: float | None

    def hourly(self, spot: bool, replicas: int = 1) -> HourlyPrice:
        """What ``replicas`` machines with this accelerator cost an hour on Vertex AI: accelerator plus machine."""
        capacity = "Spot" if spot else "on-demand"
        machine_on_demand, machine_spot = MACHINE_PRICES[self.machine_type]
        parts = {f"{self.name} accelerator ({capacity})": self.spot_usd_per_hour if spot else self.usd_per_hour,
                 f"Vertex AI {self.machine_type} machine ({capacity})": machine_spot if spot else machine_on_demand}
        known = sum((price for price in parts.values() if price is not None), 0.0) * replicas
        unknown = tuple(part for part, price in parts.items() if price is None)
        return HourlyPrice(None if unknown else known, known, unknown)


@dataclass(frozen=True)
class HourlyPrice:
    total: float | None  # None when a part has no price
    known: float  # the parts that have one
    unknown: tuple[str, ...]  # the parts that have none, named


ACCELERATORS: dict[str, Accelerator] = {}


def register_accelerator(fn: Callable[[], Accelerator]) -> Callable[[], Accelerator]:
    accelerator = fn()
    ACCELERATORS[accelerator.name] = accelerator
    return fn


def get_accelerator(name: str) -> Accelerator:
    try:
        return ACCELERATORS[name]
    except KeyError:
        raise UsageError(f"unknown accelerator {name!r}; choose one of: {', '.join(ACCELERATORS)}") from None


@register_accelerator
def tpu_v2_8() -> Accelerator:
    return Accelerator("tpu-v2-8", "tpu", "cloud-tpu", "TPU_V2", 8, None, 8, 1,
                       frozenset({"us-central1"}), 4.50, 1.35)


@register_accelerator
def tpu_v3_8() -> Accelerator:
    return Accelerator("tpu-v3-8", "tpu", "cloud-tpu", "TPU_V3", 8, None, 8, 1,
                       frozenset({"us-central1", "europe-west4"}), 8.00, 2.04)


def _tpu_v5e(chips: int, topology: str) -> Accelerator:
    # Vertex takes v5e by machine type and topology; no accelerator type or count.
    return Accelerator(f"tpu-v5e-{chips}", "tpu", f"ct5lp-hightpu-{chips}t", None, 0, topology, chips, 1,
                       frozenset({"us-central1", "us-west1", "us-west4", "us-south1", "europe-west4"}),
                       1.20 * chips, 0.48 * chips)


@register_accelerator
def tpu_v5e_1() -> Accelerator:
    return _tpu_v5e(1, "1x1")


@register_accelerator
def tpu_v5e_4() -> Accelerator:
    return _tpu_v5e(4, "2x2")


@register_accelerator
def tpu_v5e_8() -> Accelerator:
    return _tpu_v5e(8, "2x4")


@register_accelerator
def gpu_t4_1() -> Accelerator:
    return Accelerator("gpu-t4-1", "gpu", "n1-standard-8", "NVIDIA_TESLA_T4", 1, None, 1, 8, GPU_REGIONS, 0.35, 0.175)


@register_accelerator
def gpu_l4_1() -> Accelerator:
    return Accelerator("gpu-l4-1", "gpu", "g2-standard-8", "NVIDIA_L4", 1, None, 1, 8, GPU_REGIONS, 0.56, 0.223)


@register_accelerator
def gpu_a100_1() -> Accelerator:
    # A100 40GB: the price is not in the reference snapshot; Compute Engine's list price, no Spot figure kept.
    return Accelerator("gpu-a100-1", "gpu", "a2-highgpu-1g", "NVIDIA_TESLA_A100", 1, None, 1, 8,
                       frozenset({"us-central1", "us-east1", "us-west1", "europe-west4", "asia-southeast1"}),
                       2.93, None)


@register_accelerator
def gpu_h100_1() -> Accelerator:
    # Vertex AI's training price of the accelerator: "Accelerator NVIDIA_H100_80GB (training)", "$9.79655057 / 1
    # hour", from https://cloud.google.com/products/gemini-enterprise-agent-platform/pricing as transcribed verbatim
    # on 2026-10-07 (api-evangelist/google-vertex-ai plans/google-vertex-ai-plans-pricing.yml; the transcription
    # names no region; the catalogue's us-central1 figure was $9.80). No Spot figure kept. The other accelerators
    # keep the catalogue's figures: no Vertex AI training price of theirs was found.
    return Accelerator("gpu-h100-1", "gpu", "a3-highgpu-1g", "NVIDIA_H100_80GB", 1, None, 1, 8,
                       frozenset({"us-central1", "us-east4", "us-west1", "europe-west4", "asia-southeast1"}),
                       9.79655057, None)


@register_accelerator
def cpu() -> Accelerator:
    return Accelerator("cpu", "cpu", "n1-standard-8", None, 0, None, 1, 1, GPU_REGIONS, 0.0, 0.0)  # no accelerator
