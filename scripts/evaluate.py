"""Every explanation method on a set of photos, scored by the metrics of `gradcam_jax.metrics`:
a table (markdown + JSON) and a figure grid (methods x photos).

    python scripts/evaluate.py [IMG ...] [--methods grad_cam cam ...] [--steps 56]
        [--md docs/evaluation.md] [--json docs/evaluation.json] [--grid docs/images/methods_grid.png]

Per method, for the top-1 class of each photo (BVLC GoogLeNet, MATLAB resize to 224 x 224):
- deletion / insertion AUC (RISE; softmax score, mean-pixel / blurred substrate, `--steps` steps),
- average drop / increase in confidence (Grad-CAM++),
- ROAD (Rong et al.; pytorch-grad-cam's defaults): the softmax score's change when the most / least
  relevant pixels are imputed from their neighbours, averaged over percentiles 10..90,
- the model-randomisation sanity check (Adebayo et al.): Spearman correlation of the map with the
  map after re-initialising the classifier only, and after re-initialising every layer (cascading
  from the top; `--stops` lists the steps computed, all are saved in the JSON),
- milliseconds per image: the median of warm (compiled) calls on the whole batch (at least
  `--repeats`, more while they add up to under 2 s), divided by the batch size.
Each method runs with its defaults (those are what the table is about), all photos in one batch.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gradcam_jax as gj  # noqa: E402
from gradcam_jax import metrics  # noqa: E402
from gradcam_jax.methods import METHODS  # noqa: E402
from gradcam_jax.overlay import overlay  # noqa: E402

# Order of the table and the grid: the CAM family, then perturbation, then input gradients.
ORDER = [
    "grad_cam",
    "cam",
    "grad_cam_plus_plus",
    "xgrad_cam",
    "hires_cam",
    "layer_cam",
    "eigen_cam",
    "score_cam",
    "occlusion",
    "guided_backprop",
    "guided_grad_cam",
    "integrated_gradients",
    "smoothgrad",
]
STOPS = ("loss3", "inception_4e", "conv1")  # classifier only; top half; everything


def default_photos() -> list[Path]:
    import skimage

    skimage_data = Path(skimage.__file__).parent / "data"
    return [
        ROOT / "docs" / "images" / "cat_dog.jpg",
        ROOT / "docs" / "images" / "cat.png",
        Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
        skimage_data / "coffee.png",
        skimage_data / "chelsea.png",
    ]


def timed(fn, repeats: int, budget: float = 2.0, most: int = 10):
    """(result of the last call, median seconds) after one warm-up (compiling) call: at least
    `repeats` timed calls, more while they take under `budget` seconds in all (at most `most`)."""
    jax.block_until_ready(fn())
    seconds = []
    while len(seconds) < repeats or (sum(seconds) < budget and len(seconds) < most):
        start = time.perf_counter()
        result = jax.block_until_ready(fn())
        seconds.append(time.perf_counter() - start)
    return result, statistics.median(seconds)


def evaluate(model, variables, images, names, steps: int, stops, repeats: int, progress) -> tuple[dict, dict]:
    """({method: figures}, {method: maps (B, H, W)})."""
    targets = np.asarray(gj.top_k(model, variables, images, 1)[1])[:, 0]
    figures, all_maps = {}, {}
    for name in names:
        progress.set_description(name)
        method = METHODS[name]
        result, seconds = timed(lambda method=method: method(model, variables, images, targets), repeats)
        maps = result.map
        deletion = metrics.deletion(model, variables, images, maps, targets, steps=steps)
        insertion = metrics.insertion(model, variables, images, maps, targets, steps=steps)
        confidence = metrics.confidence_change(model, variables, images, maps, targets)
        road = metrics.road(model, variables, images, maps, targets)
        sanity = metrics.model_randomisation(method, model, variables, images, targets, stops=stops, original_map=maps)
        figures[name] = {
            "deletion_auc": float(np.mean(deletion.auc)),
            "insertion_auc": float(np.mean(insertion.auc)),
            "average_drop_percent": float(confidence.average_drop),
            "increase_percent": float(confidence.increase),
            "road_most_relevant_first": float(np.mean(road.most_relevant_first_average)),
            "road_least_relevant_first": float(np.mean(road.least_relevant_first_average)),
            "sanity_spearman": {stop: float(np.mean(c)) for stop, c in zip(sanity.layers, sanity.correlations)},
            "ms_per_image": 1000 * seconds / len(images),
            "per_image": {
                "deletion_auc": np.asarray(deletion.auc).round(4).tolist(),
                "insertion_auc": np.asarray(insertion.auc).round(4).tolist(),
                "sanity_spearman": {
                    s: np.asarray(c).round(4).tolist() for s, c in zip(sanity.layers, sanity.correlations)
                },
            },
        }
        all_maps[name] = np.asarray(maps)
        progress.update(1)
    return figures, all_maps


def markdown(figures: dict, photos: list[str], steps: int, stops, machine: str) -> str:
    first, last = stops[0], stops[-1]
    lines = [
        f"Top-1 class of each of {len(photos)} photos ({', '.join(photos)}), BVLC GoogLeNet, every method "
        f"with its defaults; means over the photos. Deletion/insertion: RISE curves in {steps} steps, softmax "
        f"score. Sanity: Spearman correlation with the map after re-initialising `{first}` (the classifier) "
        f"and after re-initialising every layer down to `{last}`. ROAD: change of the softmax score with the most "
        f"(MoRF) / least (LeRF) relevant pixels imputed, mean over percentiles 10..90. "
        f"Timing: {machine}, all photos in one batch, warm.",
        "",
        "| method | deletion AUC ↓ | insertion AUC ↑ | avg drop % ↓ | increase % ↑ | ROAD MoRF ↓ | ROAD LeRF ↑ "
        "| sanity ρ, classifier random ↓ | sanity ρ, all random ↓ | ms / image |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in figures.items():
        s = f["sanity_spearman"]
        lines.append(
            f"| `{name}` | {f['deletion_auc']:.3f} | {f['insertion_auc']:.3f} | {f['average_drop_percent']:.1f} | "
            f"{f['increase_percent']:.0f} | {f['road_most_relevant_first']:.3f} | {f['road_least_relevant_first']:.3f} | "
            f"{s[first]:.2f} | {s[last]:.2f} | {f['ms_per_image']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def grid_png(images: np.ndarray, all_maps: dict, photos: list, titles: list, path: Path, cell: float = 1.2) -> None:
    """Methods down, photos across, each map over its photo; saved as a 160-colour PNG (small)."""
    import matplotlib.pyplot as plt

    names = list(all_maps)
    width, height = cell * len(photos) + 1.3, cell * len(names) + 0.45
    fig, axes = plt.subplots(len(names), len(photos), figsize=(width, height), squeeze=False)
    for row, name in enumerate(names):
        for col in range(len(photos)):
            ax = axes[row, col]
            ax.imshow(overlay(images[col].astype(np.uint8), all_maps[name][col], 0.5))
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
            if row == 0:
                ax.set_title(titles[col], fontsize=7)
    fig.subplots_adjust(
        left=1.25 / width, right=0.995, top=1 - 0.4 / height, bottom=0.03 / height, wspace=0.03, hspace=0.03
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=85)
    plt.close(fig)
    picture = Image.open(buffer).convert("RGB").quantize(160, method=Image.Quantize.MEDIANCUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, optimize=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("images", nargs="*", type=Path, help="photos (default: the five named in the module doc)")
    parser.add_argument("--methods", nargs="+", default=None, choices=sorted(METHODS), metavar="METHOD")
    parser.add_argument("--steps", type=int, default=56, help="deletion/insertion steps (RISE: 224)")
    parser.add_argument("--stops", nargs="+", default=list(STOPS), help="sanity-check cascade steps, top first")
    parser.add_argument("--repeats", type=int, default=1, help="timed warm calls per method, at least")
    parser.add_argument("--md", type=Path, default=ROOT / "docs" / "evaluation.md")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "evaluation.json")
    parser.add_argument("--grid", type=Path, default=ROOT / "docs" / "images" / "methods_grid.png")
    cpu = jax.default_backend() == "cpu"
    machine = f"{os.cpu_count()}-core {platform.machine()} CPU" if cpu else jax.devices()[0].device_kind
    parser.add_argument("--machine", default=machine, help="how the timing machine is named in the table")
    args = parser.parse_args(argv)

    paths = args.images or default_photos()
    names = args.methods or [n for n in ORDER if n in METHODS] + sorted(set(METHODS) - set(ORDER))
    model, variables = gj.load_googlenet()
    images = np.stack([gj.load_image(p) for p in paths]).astype(np.float32)
    photos = [p.name for p in paths]
    with tqdm(total=len(names), unit="method", file=sys.stderr) as progress:
        figures, all_maps = evaluate(model, variables, images, names, args.steps, args.stops, args.repeats, progress)

    targets = np.asarray(gj.top_k(model, variables, images, 1)[1])[:, 0]
    titles = [f"{p}\n{gj.label(int(t))}" for p, t in zip(photos, targets)]
    table = markdown(figures, photos, args.steps, args.stops, args.machine)
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(table)
    settings = {
        "photos": photos,
        "classes": [gj.label(int(t)) for t in targets],
        "steps": args.steps,
        "stops": args.stops,
        "machine": args.machine,
        "jax": jax.__version__,
    }
    args.json.write_text(json.dumps({"settings": settings, "methods": figures}, indent=2) + "\n")
    grid_png(images, all_maps, photos, titles, args.grid)
    print(table)
    print(f"-> {args.md}, {args.json}, {args.grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
