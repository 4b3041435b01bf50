"""Benchmark ``data prepare`` against ``cp -r`` and a seed-style converter, on the raccoon images copied N times.

    .venv/bin/python bench/prepare.py [--copies 100] [--repeat 3] [--work DIR] [--keep] [--engine beam]

Commands, each timed whole, end to end (interpreter start-up and imports included): ``cp -r`` of the images (every
byte read and written once), the seed-style converter (one process, pandas group-by, PIL open per image,
tf.train.Example, one TFRecord file: what ``generate_tfrecord.py`` did), ours with the default header checks (charts
included), the same without charts, ours with ``--verify full``; with ``--engine beam`` also ours with
``--engine beam`` (Apache Beam's DirectRunner, one worker process per core), and its ratio to the local engine.
Every run starts on a warm page cache (every image is read just before it) with nothing left to write back from the
run before (``sync``).

The commands take turns for ``--repeat`` rounds, so that each round measures all of them under the same conditions:
on a shared virtual machine the cost of the kernel's page allocation, which is nearly all of ``cp -r``, can change
several-fold from one minute to the next. Printed: the fastest run of each command and the ratios of those, and the
median over rounds of each round's own ratio. Goals: ours >= 0.5x ``cp -r``, >= 5x seed.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RACCOON = REPO.parent / "shared" / "datasets" / "raccoon"
BEAM = "ours (--engine beam)"

SEED_CONVERTER = '''
import io, sys
import pandas as pd
import tensorflow as tf
from PIL import Image

def class_text_to_int(row_label):
    if row_label == "raccoon":
        return 1
    return None

def create_tf_example(group, path):
    with tf.io.gfile.GFile(f"{path}/{group.filename}", "rb") as fid:
        encoded_jpg = fid.read()
    image = Image.open(io.BytesIO(encoded_jpg))
    width, height = image.size
    xmins, xmaxs, ymins, ymaxs, classes_text, classes = [], [], [], [], [], []
    for _, row in group.object.iterrows():
        xmins.append(row["xmin"] / width)
        xmaxs.append(row["xmax"] / width)
        ymins.append(row["ymin"] / height)
        ymaxs.append(row["ymax"] / height)
        classes_text.append(row["class"].encode("utf8"))
        classes.append(class_text_to_int(row["class"]))
    feature = tf.train.Feature
    return tf.train.Example(features=tf.train.Features(feature={
        "image/height": feature(int64_list=tf.train.Int64List(value=[height])),
        "image/width": feature(int64_list=tf.train.Int64List(value=[width])),
        "image/filename": feature(bytes_list=tf.train.BytesList(value=[group.filename.encode("utf8")])),
        "image/source_id": feature(bytes_list=tf.train.BytesList(value=[group.filename.encode("utf8")])),
        "image/encoded": feature(bytes_list=tf.train.BytesList(value=[encoded_jpg])),
        "image/format": feature(bytes_list=tf.train.BytesList(value=[b"jpg"])),
        "image/object/bbox/xmin": feature(float_list=tf.train.FloatList(value=xmins)),
        "image/object/bbox/xmax": feature(float_list=tf.train.FloatList(value=xmaxs)),
        "image/object/bbox/ymin": feature(float_list=tf.train.FloatList(value=ymins)),
        "image/object/bbox/ymax": feature(float_list=tf.train.FloatList(value=ymaxs)),
        "image/object/class/text": feature(bytes_list=tf.train.BytesList(value=classes_text)),
        "image/object/class/label": feature(int64_list=tf.train.Int64List(value=classes)),
    }))

def main(csv_path, images, output):
    from collections import namedtuple
    data = namedtuple("data", ["filename", "object"])
    examples = pd.read_csv(csv_path)
    grouped = examples.groupby("filename")
    groups = [data(filename, grouped.get_group(x)) for filename, x in zip(grouped.groups.keys(), grouped.groups)]
    with tf.io.TFRecordWriter(output) as writer:
        for group in groups:
            writer.write(create_tf_example(group, images).SerializeToString())

main(*sys.argv[1:])
'''


def build(work: Path, copies: int) -> tuple[Path, Path, int]:
    """images/ with every raccoon image ``copies`` times under new names, and their datitran CSV."""
    images = work / "images"
    images.mkdir(parents=True)
    with (RACCOON / "data" / "raccoon_labels.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    sources = sorted({row["filename"] for row in rows})
    for copy in range(copies):
        for name in sources:
            shutil.copyfile(RACCOON / "images" / name, images / f"c{copy:03d}_{name}")
    labels = work / "labels.csv"
    with labels.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        for copy in range(copies):
            for row in rows:
                writer.writerow(row | {"filename": f"c{copy:03d}_{row['filename']}"})
    return images, labels, copies * len(sources)


def warm(images: Path) -> None:
    """Read every image, so that each command starts from the same (warm) page cache."""
    for path in images.iterdir():
        path.read_bytes()


def timed(name: str, command: list[str], cwd: Path, output: Path, images: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one run on a warm cache, its output removed before and everything written so far on
    disk (so that no command pays for the write-back of another's output)."""
    shutil.rmtree(output, ignore_errors=True)
    output.unlink(missing_ok=True)
    warm(images)
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"{name} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new one under the temp dir)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds: each command runs once per round")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--engine", choices=("local", "beam"), default="local",
                        help="beam: also time ours with --engine beam (Beam's DirectRunner)")
    args = parser.parse_args()
    if not (RACCOON / "images").is_dir():
        sys.exit(f"the raccoon dataset is not at {RACCOON}")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    work.mkdir(parents=True, exist_ok=True)
    outputs = 4 if args.engine == "beam" else 3
    needed = sum(p.stat().st_size for p in (RACCOON / "images").iterdir()) * args.copies * (outputs + 2)
    if shutil.disk_usage(work).free < needed:
        sys.exit(f"{work} needs about {needed / 1e9:.1f} GB free (images, a copy, {outputs} outputs)")
    try:
        images, labels, count = build(work, args.copies)
        size = sum(p.stat().st_size for p in images.iterdir())
        print(f"{count} images, {size / 1e9:.2f} GB, in {work}")
        seed = work / "seed_convert.py"
        seed.write_text(SEED_CONVERTER)
        python = sys.executable
        ours = [python, "-m", "jobs", "data", "prepare", "--input", str(labels), "--images", str(images), "--out"]
        runs = {  # name: (command, its output)
            "cp -r": (["cp", "-r", str(images), str(work / "copy")], work / "copy"),
            "seed-style converter": ([python, str(seed), str(labels), str(images), str(work / "seed.record")],
                                     work / "seed.record"),
            "ours (header checks)": ([*ours, str(work / "ours")], work / "ours"),
            "ours (--no-stats)": ([*ours, str(work / "ours-no-stats"), "--no-stats"], work / "ours-no-stats"),
            "ours (--verify full)": ([*ours, str(work / "ours-full"), "--verify", "full"], work / "ours-full"),
        }
        if args.engine == "beam":
            runs[BEAM] = ([*ours, str(work / "ours-beam"), "--engine", "beam"], work / "ours-beam")
        rounds = []  # per round: name -> (wall, CPU)
        for number in range(1, args.repeat + 1):
            rounds.append({name: timed(name, command, REPO, output, images)
                           for name, (command, output) in runs.items()})
            print(f"round {number}: " + ", ".join(f"{name} {wall:.2f} s" for name, (wall, _) in rounds[-1].items()),
                  flush=True)
        best = {name: min(r[name] for r in rounds) for name in runs}
        rate = {name: count / wall for name, (wall, _) in best.items()}
        print(f"{'command (fastest run)':<24}{'wall s':>8}{'CPU s':>8}{'images/s':>10}{'vs cp -r':>10}{'vs seed':>9}"
              f"{'round median vs cp -r':>23}")
        for name in runs:
            per_round = statistics.median(r["cp -r"][0] / r[name][0] for r in rounds)
            print(f"{name:<24}{best[name][0]:>8.2f}{best[name][1]:>8.2f}{rate[name]:>10.0f}"
                  f"{rate[name] / rate['cp -r']:>9.2f}x{rate[name] / rate['seed-style converter']:>8.2f}x"
                  f"{per_round:>22.2f}x")
        ours = rate["ours (header checks)"]
        median = statistics.median(r["cp -r"][0] / r["ours (header checks)"][0] for r in rounds)
        print(f"goals: ours >= 0.5x cp -r: {ours / rate['cp -r']:.2f}x (fastest runs), {median:.2f}x (median of "
              f"rounds); ours >= 5x seed-style: {ours / rate['seed-style converter']:.2f}x")
        if BEAM in runs:
            median = statistics.median(r[BEAM][0] / r["ours (header checks)"][0] for r in rounds)
            print(f"beam engine: {best[BEAM][0] / best['ours (header checks)'][0]:.2f}x the local engine's time "
                  f"(fastest runs), {median:.2f}x (median of rounds)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
