"""Speed of the pf trainer and of pool scoring, as ratios against a plain reference.

The reference is what peer code (SVP and most CIFAR repositories) does: a torchvision
``DataLoader`` over PIL images with ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``,
``ToTensor`` and ``Normalize``, and an fp32 training loop that reads the loss every step.
pf keeps uint8 images on the device, augments and normalises there, and never waits for
the host inside an epoch. Both train the same architecture from the same initial weights
on the same images with the same batch size and evaluate on the same test images each
epoch, in one process, one after the other: only the ratio is meant to travel between
machines.

    python benchmarks/bench_train.py                       # CPU: resnet20, 2 x 2,560 images
    python benchmarks/bench_train.py --arch resnet56 --train-images 25000 --epochs 3 \
        --workers 8 --variants default,compile,compile+graphs   # GPU

A variant names what it turns on: ``compile`` (torch.compile), ``graphs`` (CUDA graphs:
the test passes and, with compile, the training step; ``pf.graphs``), ``bf16``; ``default``
turns on none of them. Graph variants need CUDA and are skipped elsewhere.
Data: the real CIFAR-10 (``pf.data.cifar10_jpeg_path``: ../shared/data or
``$PF_CIFAR10_JPEG``) when it is there, else random CIFAR-shaped images (speed does not
depend on content). Results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms

from pf.data import Dataset, Split, cifar10_jpeg_path, load_dataset
from pf.models import build_model
from pf.experiments.record import environment, hardware_name
from pf.train import Schedule, fit, predict, resolve_device

VARIANT_OPTIONS = ("compile", "graphs", "bf16")  # what a variant's name may turn on


# ---------------------------------------------------------------------------------------
# The reference: torchvision DataLoader + PIL transforms + fp32
# ---------------------------------------------------------------------------------------


class PilImages(torch.utils.data.Dataset):
    """Images held as HWC uint8 arrays, turned into PIL images one at a time (as CIFAR10 does)."""

    def __init__(self, split: Split, indices: torch.Tensor, transform):
        self.images = split.images[indices].permute(0, 2, 3, 1).numpy()
        self.labels = split.labels[indices].tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i].squeeze())), self.labels[i]


def reference_run(model, dataset: Dataset, indices, epochs: int, batch_size: int,
                  device: torch.device, workers: int) -> float:
    """Seconds for the peer-code loop: ``epochs`` of SGD on ``indices``, test after each."""
    normalize = transforms.Normalize(dataset.mean, dataset.std)
    train_tf = transforms.Compose([transforms.RandomCrop(dataset.train.images.shape[-1], padding=4),
                                   transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                   normalize])
    loader = DataLoader(PilImages(dataset.train, indices, train_tf), batch_size, shuffle=True,
                        num_workers=workers, pin_memory=device.type == "cuda")
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()  # peer code logs the running loss every step
        reference_score(model, dataset.test, dataset, None, device, workers, batch_size)
    return time.perf_counter() - start


def reference_score(model, split: Split, dataset: Dataset, indices, device: torch.device,
                    workers: int, batch_size: int) -> float:
    """Seconds to compute softmax outputs of ``split[indices]`` through a DataLoader, fp32."""
    indices = torch.arange(len(split)) if indices is None else indices
    tf = transforms.Compose([transforms.ToTensor(),
                             transforms.Normalize(dataset.mean, dataset.std)])
    loader = DataLoader(PilImages(split, indices, tf), batch_size, num_workers=workers,
                        pin_memory=device.type == "cuda")
    model.to(device).eval()
    start = time.perf_counter()
    with torch.no_grad():
        outputs = [torch.softmax(model(x.to(device)), 1).cpu() for x, _ in loader]
    torch.cat(outputs)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------
# pf
# ---------------------------------------------------------------------------------------


def pf_run(model, dataset: Dataset, indices, epochs: int, batch_size: int, device,
           **options) -> float:
    """Seconds for ``pf.train.fit`` doing the same work as ``reference_run``."""
    schedule = Schedule(((epochs, 0.05),), batch_size=batch_size)
    return fit(model, dataset, indices, schedule, device=device, progress=False, **options).seconds


def pf_score(model, dataset: Dataset, indices, device, **options) -> float:
    """Seconds for ``pf.train.predict`` (softmax included) over ``train[indices]``."""
    _sync(device)
    start = time.perf_counter()
    torch.softmax(predict(model, dataset.train, dataset, indices, **options), 1).cpu()
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def _median_rates(phase: str, runners: dict, images: int, rounds: int) -> list[tuple]:
    """(phase, runner, median images/s) of ``rounds`` interleaved timings of each runner."""
    seconds = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            seconds[name].append(run())
    return [(phase, name, images / statistics.median(times)) for name, times in seconds.items()]


def variant_options(variant: str) -> dict:
    """``pf.train.fit`` keywords of a variant: ``compile+graphs`` -> compile and CUDA graphs."""
    parts = set(variant.split("+")) - {"default"}
    if parts - set(VARIANT_OPTIONS):
        raise SystemExit(f"bench_train: unknown variant {variant!r}; combine default, "
                         f"{', '.join(VARIANT_OPTIONS)} with '+'")
    return {"compile": "compile" in parts, "cuda_graphs": "graphs" in parts,
            "precision": "bf16" if "bf16" in parts else "auto"}


def load_benchmark_data(test_images: int, data: str = "auto") -> Dataset:
    """Real CIFAR-10 when available (``data="auto"``), else random uint8 images of CIFAR's shape."""
    if data == "auto" and cifar10_jpeg_path().exists():
        dataset = load_dataset("cifar10_jpeg")
    else:
        g = torch.Generator().manual_seed(0)

        def make(n):
            return Split(torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                         torch.randint(0, 10, (n,), generator=g))

        dataset = Dataset("random-cifar-shaped", make(50000), make(10000),
                          tuple(map(str, range(10))), (0.5,) * 3, (0.25,) * 3, augment=True)
    return replace(dataset, test=Split(dataset.test.images[:test_images],
                                       dataset.test.labels[:test_images]))


def main(argv=None) -> dict:
    """Run every variant, print a table of images/s and ratios, and return the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--train-images", type=int, default=2560)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--test-images", type=int, default=1000, help="evaluated after each epoch")
    parser.add_argument("--pool-images", type=int, default=5000, help="scored by each scorer")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0, help="reference DataLoader workers")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", choices=("auto", "random"), default="auto",
                        help="auto: the real CIFAR-10 from ../shared/data when present")
    parser.add_argument("--variants", default="default,compile,bf16",
                        help="pf variants: default, or compile, graphs, bf16 joined by '+'")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved timings of every runner; the median is reported")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    host = load_benchmark_data(args.test_images, args.data)
    dataset = host.to(device)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(host.train), generator=g)
    train_idx, pool_idx = order[:args.train_images], order[-args.pool_images:]
    torch.manual_seed(0)
    initial = build_model(args.arch, host.num_classes, host.in_channels).state_dict()

    def fresh_model():
        model = build_model(args.arch, host.num_classes, host.in_channels)
        model.load_state_dict(initial)
        return model

    # Every runner returns seconds; rounds interleave them so that a noisy neighbour on a
    # shared machine slows all of them alike, and the median round is reported.
    train_runners = {"reference (DataLoader + PIL, fp32)": lambda: reference_run(
        fresh_model(), host, train_idx, args.epochs, args.batch_size, device, args.workers)}
    variants = [v for v in args.variants.split(",")
                if device.type == "cuda" or not variant_options(v)["cuda_graphs"]]
    for variant in variants:
        options = variant_options(variant)
        pf_run(fresh_model(), dataset, train_idx[:256].to(device), 1, args.batch_size, device,
               **options)  # warm-up: compilation, allocator, kernel selection
        train_runners[f"pf {variant}"] = lambda options=options: pf_run(
            fresh_model(), dataset, train_idx.to(device), args.epochs, args.batch_size, device,
            **options)
    scored = fresh_model().to(device)
    score_runners = {"reference (DataLoader + PIL, fp32)": lambda: reference_score(
        scored, host.train, host, pool_idx, device, args.workers, args.batch_size)}
    for variant in ("default", "bf16") + (("graphs",) if device.type == "cuda" else ()):
        options = {key: value for key, value in variant_options(variant).items()
                   if key != "compile"}
        pf_score(scored, dataset, pool_idx[:1024].to(device), device, **options)  # warm-up
        score_runners[f"pf {variant}"] = lambda options=options: pf_score(
            scored, dataset, pool_idx.to(device), device, **options)
    rows = (_median_rates("train", train_runners, args.train_images * args.epochs, args.rounds)
            + _median_rates("score", score_runners, args.pool_images, args.rounds))

    env = environment(device)
    print(f"# {args.arch}, batch {args.batch_size}, {host.name}, {args.train_images} images x "
          f"{args.epochs} epochs (+{args.test_images} test images per epoch), "
          f"median of {args.rounds} interleaved rounds, "
          f"{args.pool_images} pool images; {hardware_name(env)}, {env['cpu_threads']} threads, "
          f"torch {env['torch']}")
    print("| phase | variant | images/s | x reference |")
    print("|---|---|---:|---:|")
    reference = {}
    for phase, variant, rate in rows:
        reference.setdefault(phase, rate)
        print(f"| {phase} | {variant} | {rate:,.0f} | {rate / reference[phase]:.2f} |")
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "environment": env,
              "python": platform.python_version(), "dataset": host.name,
              "rows": [dict(phase=p, variant=v, images_per_second=r, ratio=r / reference[p])
                       for p, v, r in rows]}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
