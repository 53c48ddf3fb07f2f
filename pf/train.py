"""Training and inference: SGD with a piecewise schedule, optional distillation.

The data stays on the training device (see ``pf.batches.Batches``), and every network
runs in the memory layout ``pf.layout.memory_format_for`` chooses for it (channels_last,
or NCHW where oneDNN crashes on it), its weights and every input in exactly that layout
(``pf.layout``); a distillation teacher runs in its own. On CUDA the step runs under
bf16 autocast and never waits for the host (the loss is summed on the device and read
once an epoch); ``compile=True`` wraps the model in ``torch.compile``, and
``cuda_graphs`` replays inference and the compiled training step from CUDA graphs (see
``pf.graphs``). On CPU the same code runs in fp32 unless ``precision="bf16"`` is asked
for. The test accuracy of every epoch is recorded; the one reported is the last.

    result = fit(model, dataset, labeled_idx, PAPER_SCHEDULE, device="cuda", seed=0)
    result.test_accuracy      # final epoch, in [0, 1]
    result.curve              # one test accuracy per epoch
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from pf.batches import Batches
from pf.data import Dataset, Split
from pf.distributed import (data_parallel, gather_parts, part, sum_over_processes,
                            synced_batch_norm, world_size)
from pf.graphs import GraphReplay, compile_network, mark_step, uses_graphs
from pf.layout import exact, memory_format_for, place

__all__ = [
    "LR_SHAPES",
    "Schedule",
    "PAPER_SCHEDULE",
    "FitResult",
    "evaluated_epochs",
    "kd_loss",
    "fit",
    "evaluate",
    "predict",
    "mc_dropout_probs",
    "resolve_device",
    "inference_batch_size",
    "set_determinism",
    "CUBLAS_WORKSPACE",
]

# cuBLAS needs a fixed workspace for reproducible GEMMs (NVIDIA's documented setting).
CUBLAS_WORKSPACE = ":4096:8"


LR_SHAPES = ("step", "linear")  # Schedule.shape


@dataclass(frozen=True)
class Schedule:
    """SGD hyper-parameters with a piecewise learning rate.

    ``segments`` is a sequence of (epochs, lr). With ``shape="step"`` (SVP's) each piece
    holds its rate: SVP's ((1, 0.01), (90, 0.1), (45, 0.01), (45, 0.001)) trains 181
    epochs with a one-epoch warm-up at 0.01. With ``shape="linear"`` the rate moves
    linearly, step by step, from the previous piece's rate (0 before the first piece) to
    each piece's rate, reached at the piece's last step: ((5, 0.1), (25, 0.0005)) is a
    one-cycle schedule (a 5-epoch ramp to 0.1, then a 25-epoch descent), the shape of the
    fast CIFAR trainings (e.g. Page's 24-epoch ResNet), which converge in far fewer
    epochs than a step schedule.
    """

    segments: tuple[tuple[int, float], ...]
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    shape: str = "step"

    def __post_init__(self):
        if self.shape not in LR_SHAPES:
            raise ValueError(f"shape: expected one of {', '.join(LR_SHAPES)}, got {self.shape!r}")

    @property
    def epochs(self) -> int:
        return sum(epochs for epochs, _ in self.segments)

    def lr_at(self, epoch: int, done: float = 1.0) -> float:
        """The learning rate of a (0-based) epoch's step after which ``done`` (in (0, 1])
        of the epoch is trained; a step schedule's rate is the epoch's whole."""
        if not 0 <= epoch < self.epochs:
            raise IndexError(f"epoch beyond the schedule's {self.epochs} epochs")
        previous = 0.0
        for epochs, lr in self.segments:
            if epoch < epochs:
                if self.shape == "step":
                    return lr
                return previous + (lr - previous) * (epoch + done) / epochs
            epoch -= epochs
            previous = lr
        raise AssertionError("unreachable: the epoch was checked against the schedule")


PAPER_SCHEDULE = Schedule(((1, 0.01), (90, 0.1), (45, 0.01), (45, 0.001)))


@dataclass
class FitResult:
    """What one training run produced; accuracies are fractions in [0, 1]."""

    curve: list[float] = field(default_factory=list)  # test accuracy after each evaluated epoch
    curve_epochs: list[int] = field(default_factory=list)  # those epochs, counted from 1
    train_loss: list[float] = field(default_factory=list)  # mean loss of each epoch
    seconds: float = 0.0  # wall-clock of the whole fit, evaluation included
    evaluation_seconds: float = 0.0  # of which the test evaluations
    images_seen: int = 0  # training images processed (epochs x subset size)

    @property
    def test_accuracy(self) -> float:
        """The final epoch's test accuracy: the number we report (never the best epoch)."""
        return self.curve[-1]

    @property
    def training_seconds(self) -> float:
        """Wall-clock of the training steps (a teacher's forwards included), without the
        test evaluations: the work that ``pf.flops.training_macs`` counts (and, with a
        teacher, the distillation MACs)."""
        return self.seconds - self.evaluation_seconds


def evaluated_epochs(epochs: int, eval_every: int = 1) -> list[int]:
    """The epochs (counted from 1) after which ``fit`` evaluates the test split: every
    ``eval_every``-th and always the last, whose accuracy is the one reported."""
    return sorted({*range(eval_every, epochs + 1, eval_every), epochs})


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' is CUDA when available, else CPU; anything else is taken as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _autocast(device: torch.device, precision: str, cache: bool = True):
    """bf16 autocast on CUDA ('auto') or wherever 'bf16' is asked for; fp32 otherwise.
    ``cache=False`` drops autocast's cache of bf16 weight copies, which a CUDA graph
    capture must not hold (inference re-enters autocast every batch, so it loses nothing)."""
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


def set_determinism(deterministic: bool, device: torch.device) -> None:
    """Make CUDA kernels reproducible (``deterministic=True``) or let them autotune.

    On CUDA, True turns on ``cudnn.deterministic``, turns off cuDNN's benchmark
    autotuning (it may pick different algorithms run to run) and calls
    ``torch.use_deterministic_algorithms(True, warn_only=True)`` with cuBLAS's fixed
    workspace (``CUBLAS_WORKSPACE_CONFIG``, set here unless the user set it; it must be set
    before cuBLAS starts, so call this before any CUDA work). ``warn_only``: an op that has
    no deterministic CUDA kernel warns instead of stopping the run (never crash); pf's
    trainings use none that matter (the ResNets' 1x1 global-pool backward adds one value
    per input, so its atomic adds are exact). Uninitialised memory is not filled (a
    debugging aid that costs a write per allocation; pf reads none). False lets cuDNN
    benchmark its algorithms: faster, but the same seed may select other samples.
    The cost of True on a GPU is not yet measured (no GPU has run pf; see benchmarks).
    On CPU nothing changes: its kernels are deterministic already, so both settings give
    bit-identical runs and the CPU-wide switches are left alone.
    """
    if device.type != "cuda":
        return
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def inference_batch_size(batch_size: int, device: torch.device) -> int:
    """``batch_size``, or for 0 the device's best: 1024 on CUDA, 128 on CPU.

    On the 2-core development CPU, ResNet-20 inference ran at 1,149 images/s in batches
    of 128 and 629 in batches of 1,024 (the activations outgrow the caches); a GPU wants
    large batches to fill its cores.
    """
    if batch_size:
        return batch_size
    return 1024 if device.type == "cuda" else 128


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            weight: float, temperature: float) -> torch.Tensor:
    """Hinton et al. (2015): (1 - w) * CE(student, y) + w * T^2 * KL(p_teacher^T || p_student^T).

    Both distributions are softened by ``temperature``; the T^2 factor keeps the soft
    term's gradients on the scale of the hard term's. KL is averaged over the batch.
    """
    hard = F.cross_entropy(student_logits.float(), labels)
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    soft = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return (1 - weight) * hard + weight * temperature**2 * soft


def _share_weight(images: int, step: int, total: int, schedule: Schedule) -> float:
    """What one process's mean loss over its ``images`` of batch ``step`` is weighted by, so
    that the data-parallel average of the processes' gradients is the whole batch's (1 in
    one process)."""
    processes = world_size()
    if processes == 1:
        return 1.0
    return images * processes / min(schedule.batch_size, total - step * schedule.batch_size)


def fit(model: nn.Module, dataset: Dataset, indices: torch.Tensor, schedule: Schedule, *,
        device: str | torch.device = "auto", seed: int = 0, teacher: nn.Module | None = None,
        kd_weight: float = 0.5, kd_temperature: float = 4.0, precision: str = "auto",
        compile: bool = False, cuda_graphs: bool = True, eval_batch_size: int = 0,
        record_curve: bool = True, eval_every: int = 1, progress: bool | None = None,
        desc: str = "train", recorder=None) -> FitResult:
    """Train ``model`` in place on ``dataset.train[indices]``; evaluate on the test split.

    Every epoch sets the schedule's learning rate, runs SGD (momentum, weight decay on
    every parameter, as SVP's code does) over a fresh seeded shuffle with on-device
    augmentation, then records the test accuracy in eval mode on un-augmented images.
    With a ``teacher`` the loss is ``kd_loss``; its defaults (weight 0.5, temperature 4)
    are our choice, since the PruneFuse papers do not state theirs. With
    ``record_curve=False`` only the last epoch is evaluated (selectors need no curve);
    otherwise the epochs of ``evaluated_epochs(epochs, eval_every)``: every
    ``eval_every``-th and the last (on 10,000 test images, evaluating after every epoch
    can cost more than training at a small budget).
    ``progress=None`` shows a bar only on a terminal. On CUDA, ``cuda_graphs`` replays the
    compiled training step (with ``compile``) and the test evaluation from CUDA graphs
    (``pf.graphs``); elsewhere it changes nothing.

    A ``recorder`` (e.g. ``pf.scores.DynamicsRecorder``) sees the training step's own
    outputs: ``recorder.begin(epochs, dataset.train.labels, num_classes)`` once, then
    ``recorder.record(epoch, idx, logits, y)`` after every step with the detached logits
    of that step's forward pass (train mode, augmented inputs, weights before the update)
    and the split indices of its images. It must not sync with the host or draw random
    numbers, so that training with it gives the same weights as without.

    Under ``torchrun`` each process trains on its part of every batch and the gradients
    are averaged to the whole batch's (``pf.distributed``); ``predict`` and the test
    evaluation gather every process's part.
    """
    device = resolve_device(device)
    dataset = dataset.to(device)
    layout = memory_format_for(model, device)
    place(model, device, layout)
    if teacher is not None:
        teacher_layout = memory_format_for(teacher, device)
        place(teacher, device, teacher_layout).eval()
    forward = compile_network(model, device, cuda_graphs) if compile else model
    optimizer = torch.optim.SGD(
        model.parameters(), lr=schedule.lr_at(0), momentum=schedule.momentum,
        weight_decay=schedule.weight_decay, fused=device.type == "cuda" or None,
    )
    generator = torch.Generator(device=device).manual_seed(seed)
    parallel = world_size() > 1  # under torchrun: this process's part of every batch
    batches = Batches(dataset.train, indices, schedule.batch_size, dataset, shuffle=True,
                      augment=dataset.augment, generator=generator, with_indices=True,
                      memory_format=layout, share=part if parallel else None)
    step_forward = data_parallel(model) if parallel else forward
    if recorder is not None:
        recorder.begin(schedule.epochs, dataset.train.labels, dataset.num_classes)
    evaluated = set(evaluated_epochs(schedule.epochs, eval_every if record_curve
                                     else schedule.epochs))
    result, start = FitResult(), time.perf_counter()
    epochs = tqdm(range(schedule.epochs), desc=desc, disable=None if progress is None
                  else not progress, leave=False)
    steps = len(batches)
    with synced_batch_norm(model):  # over the global batch under torchrun
        for epoch in epochs:
            model.train()
            loss_sum = torch.zeros((), device=device)
            for step, (x, y, idx) in enumerate(batches):
                for group in optimizer.param_groups:
                    group["lr"] = schedule.lr_at(epoch, (step + 1) / steps)
                mark_step(compile and cuda_graphs, device)
                with _autocast(device, precision):
                    logits = step_forward(x)
                    if teacher is None:
                        loss = F.cross_entropy(logits.float(), y)
                    else:
                        with torch.no_grad():
                            teacher_logits = teacher(exact(x, teacher_layout))
                        loss = kd_loss(logits, teacher_logits, y, kd_weight, kd_temperature)
                optimizer.zero_grad(set_to_none=True)
                (loss * _share_weight(len(y), step, len(batches.indices), schedule)).backward()
                optimizer.step()
                if recorder is not None:
                    recorder.record(epoch, idx, logits.detach(), y)
                loss_sum += loss.detach() * len(y)
            result.train_loss.append(sum_over_processes(loss_sum).item() / len(batches.indices))
            result.images_seen += len(batches.indices)
            if epoch + 1 in evaluated:
                # The training steps queued on a GPU finish before the evaluation's clock starts
                # (the evaluation itself waits for its result): a sync per evaluated epoch.
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                evaluation_start = time.perf_counter()
                # A compiled forward brings its own graphs; an eager one is captured here.
                result.curve.append(evaluate(forward, dataset.test, dataset, eval_batch_size,
                                             precision=precision,
                                             cuda_graphs=cuda_graphs and not compile))
                result.evaluation_seconds += time.perf_counter() - evaluation_start
                result.curve_epochs.append(epoch + 1)
                epochs.set_postfix(acc=f"{result.curve[-1]:.3f}",
                                   loss=f"{result.train_loss[-1]:.3f}")
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def predict(model: nn.Module, split: Split, dataset: Dataset, indices: torch.Tensor | None = None,
            batch_size: int = 0, precision: str = "auto", features: bool = False,
            cuda_graphs: bool = True) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Logits (fp32) of ``split[indices]`` in eval mode, un-augmented, in large batches.

    ``batch_size=0`` picks one for the device (see ``inference_batch_size``).
    With ``features=True`` also returns the penultimate features (the input of ``fc``),
    computed in the same pass. On CUDA, ``cuda_graphs`` replays the forward pass from a
    CUDA graph (``pf.graphs.GraphReplay``; same kernels, same numbers). The model is left
    in eval mode, on the split's device, in its layout (``pf.layout.place``).
    """
    device = split.device
    layout = memory_format_for(model, device)
    place(model, device, layout).eval()
    indices = torch.arange(len(split), device=device) if indices is None else indices
    total = len(indices)
    batches = Batches(split, part(torch.as_tensor(indices, device=device)),
                      inference_batch_size(batch_size, device), dataset, memory_format=layout)

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with _autocast(device, precision, cache=False):
            if features:
                h = model.features(x)
                return model.fc(h), h
            return (model(x),)

    if uses_graphs(cuda_graphs, device):
        forward = GraphReplay(forward, full_batches=len(batches.indices) // batches.batch_size)
    # Copies: a replayed graph (or compile's) rewrites its outputs at the next batch.
    outputs = [[t.to(torch.float32, copy=True) for t in forward(x)] for x, _ in batches]
    # Under torchrun each process predicted its part; every process gets all the rows.
    logits = gather_parts(torch.cat([batch[0] for batch in outputs]), total)
    if features:
        return logits, gather_parts(torch.cat([batch[1] for batch in outputs]), total)
    return logits


@torch.no_grad()
def mc_dropout_probs(model: nn.Module, features: torch.Tensor, passes: int,
                     generator: torch.Generator) -> torch.Tensor:
    """Softmax outputs (passes, N, classes), fp32, of ``passes`` Monte-Carlo dropout passes
    of ``model``'s classifier over its penultimate ``features`` (N, d) from ``predict``.

    Each pass draws a keep-mask with probability 1 - p per feature from ``generator`` (on
    the features' device), scales the kept features by 1 / (1 - p) as ``nn.Dropout``
    does in training, and applies ``model.fc``. The model's only dropout sits before its
    classifier (``pf.models``), so the features of one eval-mode pass are those of every
    pass (BatchNorm stays in eval mode, as in Gal et al.'s MC dropout).
    """
    rate = model.dropout.p
    if not 0 < rate < 1:
        raise ValueError(f"dropout: Monte-Carlo dropout needs a rate in (0, 1), got {rate}")
    features = features.to(torch.float32)
    keep = torch.full_like(features, 1 - rate)
    samples = []
    for _ in range(passes):
        mask = torch.bernoulli(keep, generator=generator)
        logits = model.fc(features * mask / (1 - rate))
        samples.append(torch.softmax(logits.float(), dim=1))
    return torch.stack(samples)


def evaluate(model: nn.Module, split: Split, dataset: Dataset, batch_size: int = 0,
             precision: str = "auto", cuda_graphs: bool = True) -> float:
    """Top-1 accuracy of ``model`` on a whole split, in eval mode on un-augmented images."""
    logits = predict(model, split, dataset, batch_size=batch_size, precision=precision,
                     cuda_graphs=cuda_graphs)
    return (logits.argmax(1) == split.labels).float().mean().item()
