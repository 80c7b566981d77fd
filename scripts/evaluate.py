"""Every explanation method on a set of photos, scored by the metrics of `gradcam_jax.metrics`:
a table (markdown + JSON) and a figure grid (methods x photos).

    python scripts/evaluate.py [IMG ...] [--methods grad_cam cam ...] [--steps 56] [--reuse [--retime]]
        [--md docs/evaluation.md] [--json docs/evaluation.json] [--grid docs/images/methods_grid.png]
        [--maps build/evaluation_maps.npz]

Per method, for the top-1 class of each photo (BVLC GoogLeNet, MATLAB resize to 224 x 224):
- deletion / insertion AUC (RISE; softmax score, mean-pixel / blurred baseline, `--steps` steps),
- average drop / increase in confidence (Grad-CAM++),
- ROAD (Rong et al. 2022, pytorch-grad-cam's `ROADCombined`): the mean over percentiles of
  (least-relevant-first - most-relevant-first) / 2 of the softmax score, noisy linear imputation,
- the model-randomisation sanity check (Adebayo et al.): Spearman correlation of the map with the
  map after re-initialising the classifier only, and after re-initialising every layer (cascading
  from the top; `--stops` lists the steps computed, all are saved in the JSON),
- milliseconds per image: the median of warm (compiled) calls on the whole batch (at least
  `--repeats`, more while they add up to under 2 s), divided by the batch size;
- and a second table, one or two metrics of each other family of `gradcam_jax.metrics` that the
  photos allow (`FAMILY_COLUMNS`): faithfulness correlation, max sensitivity, random logit,
  sparseness and complexity.
Each method runs with its defaults (those are what the table is about), all photos in one batch,
except the few in `LIGHT_OPTIONS`, whose defaults cost thousands of forward passes per image.
The attention methods need a transformer and are left out.

Every method's maps go to `--maps` (an .npz, not for the repository); with `--reuse`, a method
already in `--json` is not run again: its figures are kept and only metrics it lacks (a newer
column) are computed from its stored maps (run once more, untimed, where `--maps` lacks them), so
adding a method or a metric to the table costs only that; `--retime` times the kept methods again
(one run on a quiet machine gives ratios that mean something; the other columns take hours here and
may run beside other work). Kept timings keep the machine they were measured on (`--machine`).
"""

from __future__ import annotations

import argparse
import functools
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
from gradcam_jax._src.methods.transformer import ATTENTION_METHODS  # noqa: E402
from gradcam_jax.methods import METHODS  # noqa: E402
from gradcam_jax.overlay import blend  # noqa: E402

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
    # the methods the other libraries have (issue 20)
    "grad_cam_elementwise",
    "eigen_grad_cam",
    "ablation_cam",
    "kpca_cam",
    "fem",
    "finer_cam",
    "shapley_cam",
    "fullgrad",
    "smooth_grad_cam_plus_plus",
    "ss_cam",
    "is_cam",
    "saliency",
    "input_x_gradient",
    "deeplift",
    "lrp",
    "gradient_shap",
    "feature_ablation",
    "shapley_sampling",
    "kernel_shap",
    "lime",
    "image_lime",
]
STOPS = ("loss3", "inception_4e", "conv1")  # classifier only; top half; everything
# Options for the methods whose defaults cost thousands of forward passes per image (each method runs
# four times per photo here: once, and once per sanity-check step); stated in the table.
LIGHT_OPTIONS = {
    "is_cam": {"layer": "inception_5b-relu_pool_proj", "samples": 2},  # 2 x 128 passes, not 10 x 1024
    "ss_cam": {"layer": "inception_5b-relu_pool_proj", "samples": 2},  # 2 x 128, not 35 x 1024
    "shapley_sampling": {"patch": 56, "samples": 4},  # 4 x 17 passes, not 25 x 197
    "image_lime": {"samples": 128},  # not 2048
    "lime": {"samples": 128},
    "kernel_shap": {"samples": 128},
}


# The robustness column re-runs each method ROBUSTNESS_DRAWS times per photo, on the photo plus uniform
# noise in [-ROBUSTNESS_NOISE, ROBUSTNESS_NOISE] (10% of the 0-255 pixel range: Quantus's 0.2 assumes
# standardised inputs); only for the methods under ROBUSTNESS_MS per image (hours otherwise).
ROBUSTNESS_DRAWS, ROBUSTNESS_NOISE, ROBUSTNESS_MS = 5, 25.5, 6000


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


def evaluate(
    model, variables, images, names, steps: int, stops, repeats: int, progress, stored, save, retime: bool = False
) -> tuple[dict, dict]:
    """({method: figures}, {method: maps (B, H, W)}). `stored`: ({method: figures}, {method: maps})
    of an earlier run to reuse (empty to run everything); `save(figures, maps)` is called after each
    method, so a long run stopped half-way keeps what it did (`--reuse` goes on from there);
    `retime`: time the stored methods again (their other figures kept)."""
    targets = np.asarray(gj.top_k(model, variables, images, 1)[1])[:, 0]
    figures, all_maps = {}, {}
    for name in names:
        progress.set_description(name)
        method = functools.partial(METHODS[name], **LIGHT_OPTIONS.get(name, {}))
        if name in stored[0]:
            f, maps = dict(stored[0][name]), stored[1].get(name)
            if retime:  # the timing again, in one quiet run: the other columns stay
                result, seconds = timed(lambda method=method: method(model, variables, images, targets), repeats)
                f |= {"ms_per_image": 1000 * seconds / len(images), "load": os.getloadavg()[0]}
                maps = result.map if maps is None else maps
            elif maps is None:  # the figures kept, the maps not (--maps is not in the repository): run once
                maps = jax.block_until_ready(method(model, variables, images, targets).map)
        else:
            result, seconds = timed(lambda method=method: method(model, variables, images, targets), repeats)
            maps = result.map
            deletion = metrics.deletion(model, variables, images, maps, targets, steps=steps)
            insertion = metrics.insertion(model, variables, images, maps, targets, steps=steps)
            confidence = metrics.confidence_change(model, variables, images, maps, targets)
            sanity = metrics.model_randomisation(
                method, model, variables, images, targets, stops=stops, original_map=maps
            )
            f = {
                "options": LIGHT_OPTIONS.get(name, {}),
                "deletion_auc": float(np.mean(deletion.auc)),
                "insertion_auc": float(np.mean(insertion.auc)),
                "average_drop_percent": float(confidence.average_drop),
                "increase_percent": float(confidence.increase),
                "sanity_spearman": {stop: float(np.mean(c)) for stop, c in zip(sanity.layers, sanity.correlations)},
                "ms_per_image": 1000 * seconds / len(images),
                "load": os.getloadavg()[0],
                "per_image": {
                    "deletion_auc": np.asarray(deletion.auc).round(4).tolist(),
                    "insertion_auc": np.asarray(insertion.auc).round(4).tolist(),
                    "sanity_spearman": {
                        s: np.asarray(c).round(4).tolist() for s, c in zip(sanity.layers, sanity.correlations)
                    },
                },
            }
        for column, score in newer_columns(method, f, model, variables, images, maps, targets).items():
            f[column] = None if score is None else float(np.mean(score))
            f["per_image"][column] = None if score is None else np.asarray(score).round(4).tolist()
        figures[name] = f
        all_maps[name] = np.asarray(maps)
        save(figures, all_maps)
        progress.update(1)
    return figures, all_maps


def newer_columns(method, figures, model, variables, images, maps, targets) -> dict:
    """{column: (B,) per-image scores, or None where not computed} of the columns added after the
    first table, each only where `figures` lacks it (so `--reuse` computes only what is new)."""

    def sensitivity():  # re-runs the method ROBUSTNESS_DRAWS times: only where that takes minutes, not hours
        if figures["ms_per_image"] > ROBUSTNESS_MS:
            return None
        return metrics.max_sensitivity(
            model, variables, images, maps, targets, method=method, key=0,
            samples=ROBUSTNESS_DRAWS, lower_bound=ROBUSTNESS_NOISE, batch_size=8,
        ).per_image  # fmt: skip

    columns = {
        # pytorch-grad-cam's ROADCombined: (B,) per image
        "road": lambda: metrics.road(model, variables, images, maps, targets).combined,
        "faithfulness_correlation": lambda: (
            metrics.faithfulness_correlation(model, variables, images, maps, targets, key=0).per_image
        ),
        "max_sensitivity": sensitivity,
        "random_logit": lambda: (
            metrics.random_logit(model, variables, images, maps, targets, method=method, key=0).per_image
        ),
        "sparseness": lambda: metrics.sparseness(maps).per_image,
        "complexity": lambda: metrics.complexity(maps).per_image,
    }
    return {column: compute() for column, compute in columns.items() if column not in figures}


def markdown(figures: dict, photos: list[str], steps: int, stops, machine: str) -> str:
    first, last = stops[0], stops[-1]
    light = [
        f"`{n}` ({', '.join(f'{k}={v!r}' for k, v in f['options'].items())})"
        for n, f in figures.items()
        if f.get("options")
    ]
    loads = [f["load"] for f in figures.values() if "load" in f]
    road = all("road" in f for f in figures.values())
    lines = [
        f"Top-1 class of each of {len(photos)} photos ({', '.join(photos)}), BVLC GoogLeNet, every method "
        f"with its defaults" + (f" except {', '.join(light)}" if light else "") + "; means over the photos. "
        f"Deletion/insertion: RISE curves in {steps} steps, softmax score."
        + (
            " ROAD: the mean over percentiles 10-90 of (least- minus most-relevant-first) / 2, softmax score."
            if road
            else ""
        )
        + f" Sanity: Spearman correlation with the map after re-initialising `{first}` (the classifier) "
        f"and after re-initialising every layer down to `{last}`. Timing: {machine}, all photos in one batch, warm"
        + (f", one-minute load {min(loads):.1f} to {max(loads):.1f} while it ran" if loads else "")
        + " (for the time of each as a multiple of Grad-CAM's, in one run: benchmarks/method_cost.py).",
        "",
        "| method | deletion AUC ↓ | insertion AUC ↑ | avg drop % ↓ | increase % ↑ "
        + ("| ROAD ↑ " if road else "")
        + "| sanity ρ, classifier random ↓ | sanity ρ, all random ↓ | ms / image |",
        "|---|---:|---:|---:|---:|" + ("---:|" if road else "") + "---:|---:|---:|",
    ]
    for name, f in figures.items():
        s = f["sanity_spearman"]
        lines.append(
            f"| `{name}` | {f['deletion_auc']:.3f} | {f['insertion_auc']:.3f} | {f['average_drop_percent']:.1f} | "
            f"{f['increase_percent']:.0f} | "
            + (f"{f['road']:.3f} | " if road else "")
            + f"{s[first]:.2f} | {s[last]:.2f} | {f['ms_per_image']:.0f} |"
        )
    lines += other_families(figures)
    lines += [
        "",
        f"The methods that read a transformer's attention ({', '.join(f'`{n}`' for n in ATTENTION_METHODS)}) "
        "need a ViT, not GoogLeNet: their grid is the toy ViT's (pointing game, deletion and insertion AUCs) "
        "in [Transformers](transformers.md#do-they-point-at-the-evidence).",
    ]
    return "\n".join(lines) + "\n"


# The other families' columns (gradcam_jax.metrics, docs/evaluation-suite.md): (key, heading, format).
FAMILY_COLUMNS = (
    ("faithfulness_correlation", "faithfulness correlation ↑", "{:.3f}"),
    ("max_sensitivity", "max sensitivity ↓", "{:.3f}"),
    ("random_logit", "random logit SSIM ↓", "{:.3f}"),
    ("sparseness", "sparseness ↑", "{:.3f}"),
    ("complexity", "complexity (nats) ↓", "{:.2f}"),
)


def other_families(figures: dict) -> list[str]:
    """Markdown lines of the second table: the families of issue 29 other than the first table's
    (a column where any method has it; "—" where a method has not)."""
    columns = [c for c in FAMILY_COLUMNS if any(c[0] in f for f in figures.values())]
    if not columns:
        return []
    skipped = [f"`{n}`" for n, f in figures.items() if "max_sensitivity" in f and f["max_sensitivity"] is None]
    lines = [
        "",
        "The other families, same maps (Quantus's definitions, `gradcam_jax.metrics`; "
        "[what each measures](evaluation-suite.md)). Faithfulness correlation: Quantus's defaults "
        "(100 random subsets of 224 pixels set to black, logit); max sensitivity: the largest relative "
        f"change of the map over {ROBUSTNESS_DRAWS} draws of uniform noise in ±{ROBUSTNESS_NOISE} "
        "(10% of the pixel range), re-running the method"
        + (f" (not run for {', '.join(skipped)}: over {ROBUSTNESS_MS / 1000:.0f} s per image)" if skipped else "")
        + "; random logit: SSIM of the map with the method's map of a random other class; sparseness (Gini) "
        "and complexity (entropy) of the map. Localisation needs masks the photos lack (the toy ViT's pointing "
        "game is in [Transformers](transformers.md#do-they-point-at-the-evidence)); the axiomatic metrics need "
        "raw signed attributions, not maps scaled to [0, 1].",
        "",
        "| method | " + " | ".join(heading for _, heading, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, f in figures.items():
        cells = [form.format(f[key]) if f.get(key) is not None else "—" for key, _, form in columns]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return lines


def grid_png(images: np.ndarray, all_maps: dict, photos: list, titles: list, path: Path) -> None:
    """Methods down, photos across, each map over its photo; saved as a 160-colour PNG (small)."""
    import matplotlib.pyplot as plt

    names = list(all_maps)
    cell = 1.2 if len(names) <= 16 else 0.9  # inches: the whole grid stays a page or two tall
    width, height = cell * len(photos) + 1.7, cell * len(names) + 0.45
    fig, axes = plt.subplots(len(names), len(photos), figsize=(width, height), squeeze=False)
    for row, name in enumerate(names):
        for col in range(len(photos)):
            ax = axes[row, col]
            ax.imshow(blend(images[col].astype(np.uint8), all_maps[name][col], 0.5))
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
            if row == 0:
                ax.set_title(titles[col], fontsize=7)
    fig.subplots_adjust(
        left=1.65 / width, right=0.995, top=1 - 0.4 / height, bottom=0.03 / height, wspace=0.03, hspace=0.03
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=85)
    plt.close(fig)
    picture = Image.open(buffer).convert("RGB").quantize(160, method=Image.Quantize.MEDIANCUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, optimize=True)


def stored_run(json_path: Path, maps_path: Path, photos: list, steps: int, stops) -> tuple[dict, dict]:
    """({method: figures}, {method: maps}) of an earlier run with the same photos and settings, for
    `--reuse`; empty where there is none (or its settings differ)."""
    if not json_path.exists():
        return {}, {}
    earlier = json.loads(json_path.read_text())
    settings = earlier["settings"]
    if settings["photos"] != photos or settings["steps"] != steps or settings["stops"] != list(stops):
        print(f"--reuse: {json_path} was made with other photos or settings; running everything", file=sys.stderr)
        return {}, {}
    if not maps_path.exists():  # the figures only: each kept method runs once more for its maps
        return earlier["methods"], {}
    with np.load(maps_path) as maps:
        return earlier["methods"], {name: maps[name] for name in maps.files}


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
    parser.add_argument("--maps", type=Path, default=ROOT / "build" / "evaluation_maps.npz", help="every map (.npz)")
    parser.add_argument("--reuse", action="store_true", help="keep the methods already in --json and --maps")
    parser.add_argument("--retime", action="store_true", help="with --reuse: time the kept methods again")
    cpu = jax.default_backend() == "cpu"
    machine = f"{os.cpu_count()}-core {platform.machine()} CPU" if cpu else jax.devices()[0].device_kind
    parser.add_argument(
        "--machine", help=f"how the timing machine is named in the table (default: {machine!r}, or the kept one)"
    )
    args = parser.parse_args(argv)

    paths = args.images or default_photos()
    cnn_methods = [n for n in METHODS if n not in ATTENTION_METHODS]
    every = [n for n in ORDER if n in cnn_methods] + sorted(set(cnn_methods) - set(ORDER))  # the table's order
    names = args.methods or every
    model, variables = gj.load_googlenet()
    images = np.stack([gj.load_image(p) for p in paths]).astype(np.float32)
    photos = [p.name for p in paths]
    stored = stored_run(args.json, args.maps, photos, args.steps, args.stops) if args.reuse else ({}, {})
    if args.machine is None:  # kept timings were measured on the machine their table names
        kept = json.loads(args.json.read_text())["settings"].get("machine") if stored[0] and not args.retime else None
        args.machine = str(kept or machine)
    targets = np.asarray(gj.top_k(model, variables, images, 1)[1])[:, 0]
    settings = {
        "photos": photos,
        "classes": [gj.label(int(t)) for t in targets],
        "steps": args.steps,
        "stops": args.stops,
        "machine": args.machine,
        "jax": jax.__version__,
    }
    if args.methods:  # named methods run again; the stored others stay in the table
        stored = ({n: f for n, f in stored[0].items() if n not in names}, stored[1])
    order = [n for n in every if n in names or n in stored[0]]

    def merged(done: dict, kept: dict) -> dict:
        return {n: done.get(n, kept.get(n)) for n in order if n in done or n in kept}

    def save(figures: dict, all_maps: dict) -> None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.maps.parent.mkdir(parents=True, exist_ok=True)
        table = {"settings": settings, "methods": merged(figures, stored[0])}
        args.json.write_text(json.dumps(table, indent=2) + "\n")
        np.savez_compressed(args.maps, **merged(all_maps, stored[1]))

    with tqdm(total=len(names), unit="method", file=sys.stderr) as progress:
        figures, all_maps = evaluate(
            model, variables, images, names, args.steps, args.stops, args.repeats, progress, stored, save, args.retime
        )
    figures, all_maps = merged(figures, stored[0]), merged(all_maps, stored[1])

    titles = [f"{p}\n{gj.label(int(t))}" for p, t in zip(photos, targets)]
    table = markdown(figures, photos, args.steps, args.stops, args.machine)
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(table)
    grid_png(images, all_maps, photos, titles, args.grid)
    print(table)
    print(f"-> {args.md}, {args.json}, {args.grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
