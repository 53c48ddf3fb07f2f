"""What a GPU machine without internet needs from here, and how the check gets it there.

The GPU machines pf is checked on have Python with PyTorch, torchvision and a list of
common packages (``DEVICE_IMAGE``), but not all of pf's dependencies, and no internet.
``bundle`` (``make gpu-bundle``) builds the missing ones (``GPU_WHEELS``) as wheels at
requirements.lock's versions into ``.whl/`` and copies the CIFAR-10 archive into
``.data/``; git ignores both, and both must travel with the working tree.
``install_bundle`` installs them there, offline; ``bundle_problems`` and
``import_problems`` check here that the bundle is complete and that code imports with
nothing but the machine's packages and the bundle. Used by ``gpu_check.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# pf runs from this working tree, on the GPU machine too, where it is not installed.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pf.provenance import LOCK_FILE, normal_name  # noqa: E402 -- needs ROOT on the path

WHEELS = ROOT / ".whl"
DATA = ROOT / ".data"
SITE = ROOT / ".gpu-site"  # where the check installs the wheels
LOCK = ROOT / LOCK_FILE
# pf's dependencies that the GPU machine's image lacks (the device tool's KINDS.md, package
# list read 2026-11-17), with theirs: built as wheels at the lock's versions.
GPU_WHEELS = ("torch-pruning", "fvcore", "iopath", "yacs", "termcolor")
# The distributions of that image (KINDS.md's list, read there 2026-11-17). The dry run
# hides every other installed distribution, so an import that would fail there fails here.
DEVICE_IMAGE = tuple("""
    absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio
    attrs botorch build certifi charset-normalizer chex click cloudpickle cmake colorama
    contourpy coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x
    cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax
    fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
    huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax
    jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader
    lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
    markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
    multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
    numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc
    nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand
    nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13
    nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
    opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint
    packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
    propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
    pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
    pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests
    rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn
    sentencepiece sentence-transformers setuptools shellingham simplejson six
    sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server
    tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio
    torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton
    typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel
    wrapt xarray xxhash yarl zipp
""".split())


def install_wheels(target: Path) -> None:
    """pip-install the bundled wheels into ``target``, offline and without their needs."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-qq", "--no-index", "--no-deps",
                    "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(target),
                    *map(str, WHEELS.glob("*.whl"))], check=True)


def install_bundle() -> None:
    """Install the bundled wheels into SITE and put it, and pf's working tree, on the path
    of this process and of every process it starts."""
    install_wheels(SITE)
    sys.path[:0] = [str(SITE), str(ROOT)]
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(SITE), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    os.environ.setdefault("PF_CIFAR10_JPEG", str(DATA / "cifar10-jpeg.tar.gz"))


def locked_versions() -> dict[str, str]:
    """GPU_WHEELS' versions in requirements.lock."""
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", LOCK.read_text(), flags=re.M))
    pins = {normal_name(name): version for name, version in pins.items()}
    missing = [name for name in GPU_WHEELS if normal_name(name) not in pins]
    if missing:
        raise SystemExit(f"gpu_bundle: {', '.join(missing)} not pinned in {LOCK.name}")
    return {name: pins[normal_name(name)] for name in GPU_WHEELS}


def bundle() -> int:
    """Build GPU_WHEELS at the locked versions into .whl/ and copy the CIFAR-10 archive
    into .data/ when it is found (needs the package registries; run before a GPU lease)."""
    from pf.data import cifar10_jpeg_path

    shutil.rmtree(WHEELS, ignore_errors=True)
    pins = [f"{name}=={version}" for name, version in locked_versions().items()]
    # fvcore and iopath ship only as source: pip wheel builds them (all are pure Python).
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-qq", "--no-deps", "-w",
                    str(WHEELS), *pins], check=True)
    print(f"gpu_bundle: {len(pins)} wheels in {WHEELS.name}/")
    archive = cifar10_jpeg_path()
    if archive.exists():
        DATA.mkdir(exist_ok=True)
        shutil.copy(archive, DATA / archive.name)
        print(f"gpu_bundle: {archive.name} in {DATA.name}/")
    elif not (DATA / archive.name).exists():
        print(f"gpu_bundle: no CIFAR-10 archive at {archive}: the GPU check needs it in "
              f"{DATA.name}/ (set PF_CIFAR10_JPEG and bundle again)")
    return 0


def bundle_problems(with_data: bool = True) -> list[str]:
    """What is missing from or wrong in the bundle, one line each; ``with_data=False``
    leaves the CIFAR-10 archive out."""
    problems = []
    wheels = sorted(WHEELS.glob("*.whl"))
    for name, version in locked_versions().items():
        found = [w.name for w in wheels
                 if normal_name(w.name.split("-")[0]) == normal_name(name)]
        if len(found) != 1 or f"-{version}-" not in found[0]:
            problems.append(f"{name}=={version}: {found or 'no wheel'} in {WHEELS.name}/")
    if with_data and not (DATA / "cifar10-jpeg.tar.gz").exists():
        problems.append(f"cifar10-jpeg.tar.gz: not in {DATA.name}/")
    return problems


# Run in a fresh Python with the wheels installed in a folder of their own: every
# installed distribution the GPU machine lacks is hidden, then each step's code imported.
IMPORT_CHECK = """
import importlib, importlib.metadata as md, importlib.util, sys
allowed, site, targets = set(sys.argv[1].split(",")), sys.argv[2], sys.argv[3:]
from pf.provenance import normal_name
hidden = {top for top, dists in md.packages_distributions().items() if top not in
          sys.stdlib_module_names and not any(normal_name(d) in allowed for d in dists)}
class Hide:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in hidden:
            spec = importlib.machinery.PathFinder.find_spec(top, [site])
            if spec is None:
                raise ModuleNotFoundError(f"{top} (not on the GPU machine)", name=top)
        return None
sys.meta_path.insert(0, Hide())
for target in targets:
    if target.endswith(".py"):
        spec = importlib.util.spec_from_file_location(target.replace("/", "_")[:-3], target)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    else:
        importlib.import_module(target)
print("imported", len(targets))
"""


def import_problems(targets: list[str]) -> list[str]:
    """Import ``targets`` (modules, or .py files relative to the project) as the GPU
    machine would: with DEVICE_IMAGE's packages and the wheels alone."""
    with tempfile.TemporaryDirectory(prefix="pf-gpu-site-") as site:
        install_wheels(Path(site))
        allowed = ",".join({normal_name(n) for n in (*DEVICE_IMAGE, *GPU_WHEELS, "pf")})
        done = subprocess.run([sys.executable, "-c", IMPORT_CHECK, allowed, site, *targets],
                              cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": f"{site}:{ROOT}"})
    if done.returncode != 0:
        return [(done.stderr.strip().splitlines() or ["no output"])[-1]]
    return []
