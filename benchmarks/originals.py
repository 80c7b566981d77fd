"""Each method another library has, against that library's own code on the same weights: the
original runs (captum 0.9, pytorch-grad-cam 1.5.7, torchcam 0.5) for `tests/test_originals.py`,
and, run as a script, the seconds each side takes on the same batch and how well the maps agree.

The originals run on the PyTorch port of the BVLC GoogLeNet (`benchmarks/torch_googlenet.py`).
pytorch-grad-cam's CAM methods only look at inception_5b-output and above, so for the comparison
they run on the port's head (`Head`), given the port's activations there: the map comes out at layer
resolution (7 x 7, no cv2 resize) and is brought to the input size with Pillow's bicubic (Keys,
a = -0.5, the interpolation our maps use). The timed rows run them as users do, on the whole
network (`--whole`, default on).

    python benchmarks/originals.py [--methods saliency ablation_cam ...] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import torch_googlenet as tg  # noqa: E402

DOG, CAT = 243, 282  # "bull mastiff", "tiger cat"
CLASSES = (DOG, CAT)
MEAN_RGB = tuple(reversed(tg.BGR_MEAN))  # the pixel the network sees as zero, RGB


class Tap(torch.nn.Module):
    """A layer of its own at inception_5b-output for pytorch-grad-cam's hooks (a copy, so its
    output is a new tensor whose gradient the hooks can catch)."""

    def forward(self, x):
        return x.clone()


class Head(torch.nn.Module):
    """The port above inception_5b-output: activations (B, 1024, 7, 7) -> logits."""

    def __init__(self, net: tg.TorchGoogLeNet):
        super().__init__()
        self.tap, self.net = Tap(), net

    def forward(self, features):
        return self.net.head(self.tap(features))


class Whole(torch.nn.Module):
    """The whole port with the same `tap` after inception_5b-output, for the timed rows."""

    def __init__(self, net: tg.TorchGoogLeNet):
        super().__init__()
        self.tap, self.net = Tap(), net

    def forward(self, images):
        return self.net.head(self.tap(self.net.features(images)))


class Context(NamedTuple):
    net: tg.TorchGoogLeNet
    images: np.ndarray  # (1, 224, 224, 3) float32 RGB 0..255, as our model takes it
    pair: torch.Tensor  # (2, 3, 224, 224): the photo twice, one per class (captum: a target per example)
    features: torch.Tensor  # (1, 1024, 7, 7): the port's inception_5b-output


def context(images: np.ndarray, net: tg.TorchGoogLeNet | None = None) -> Context:
    net = net if net is not None else tg.load_bvlc()
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        features = net.features(x)
    return Context(net, images, x.repeat(2, 1, 1, 1), features)


def rescaled(m: np.ndarray) -> np.ndarray:
    """Each (..., h, w) map to [0, 1] by its own min and max."""
    low = m.min(axis=(-2, -1), keepdims=True)
    return (m - low) / (m.max(axis=(-2, -1), keepdims=True) - low)


def pixel_map(attributions: torch.Tensor) -> np.ndarray:
    """captum's (N, 3, H, W) attributions -> (N, H, W): max over channels of |a|, rescaled."""
    return rescaled(attributions.detach().abs().amax(dim=1).numpy())


def upsampled(m: np.ndarray, size=(224, 224)) -> np.ndarray:
    """A (h, w) map in [0, 1] -> (H, W) by Pillow's bicubic, clipped to [0, 1]."""
    image = Image.fromarray(np.asarray(m, np.float32), "F").resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(image), 0.0, 1.0)


# ---- captum ---------------------------------------------------------------------------------------


def captum_saliency(ctx: Context) -> np.ndarray:
    from captum.attr import Saliency

    return pixel_map(Saliency(ctx.net).attribute(ctx.pair, target=list(CLASSES), abs=True))


def captum_input_x_gradient(ctx: Context) -> np.ndarray:
    """captum's InputXGradient of the network seen from the mean-subtracted input: ours with baseline "mean"."""
    from captum.attr import InputXGradient

    mean = torch.tensor(MEAN_RGB).view(1, 3, 1, 1)
    explainer = InputXGradient(lambda centred: ctx.net(centred + mean))
    return pixel_map(explainer.attribute(ctx.pair - mean, target=list(CLASSES)))


GSHAP_SAMPLES = 16


def captum_gradient_shap(ctx: Context) -> np.ndarray:
    """Black baseline, no noise, GSHAP_SAMPLES draws (torch and numpy seeded with 0)."""
    from captum.attr import GradientShap

    torch.manual_seed(0)
    np.random.seed(0)  # captum draws the path points with numpy
    baselines = torch.zeros(1, *ctx.pair.shape[1:])
    return pixel_map(
        GradientShap(ctx.net).attribute(ctx.pair, baselines, n_samples=GSHAP_SAMPLES, target=list(CLASSES))
    )


class ReLUInception(tg.Inception):
    """The port's inception module with each ReLU an `nn.ReLU` module of its own, named as Caffe's
    ReLU layers (`relu_1x1`, ...): captum's DeepLift rescales only the `nn.ReLU` modules it hooks."""

    def __init__(self, cin: int, widths: tuple[int, ...]):
        super().__init__(cin, widths)
        for conv in list(self.keys()):
            self[f"relu_{conv}"] = torch.nn.ReLU()

    def forward(self, x):
        def conv_relu(conv: str, h: torch.Tensor) -> torch.Tensor:
            return self[f"relu_{conv}"](self[conv](h))

        branch3 = conv_relu("3x3", conv_relu("3x3_reduce", x))
        branch5 = conv_relu("5x5", conv_relu("5x5_reduce", x))
        branch_pool = conv_relu("pool_proj", tg.max_pool(x, 3, 1, 1))
        return torch.cat([conv_relu("1x1", x), branch3, branch5, branch_pool], dim=1)


class ReLUModules(tg.TorchGoogLeNet):
    """The port with each of its 57 ReLUs an `nn.ReLU` module used once (captum's DeepLift needs
    that); the same weights and outputs. Its max pools stay functional, as in the port, so captum
    gives them, as we do, their ordinary gradient (its max-pool rule hooks `nn.MaxPool2d` modules)."""

    def __init__(self, net: tg.TorchGoogLeNet):
        super().__init__()
        cin = 192
        for stage, widths in tg.INCEPTIONS.items():
            inception = ReLUInception(cin, widths)
            self.add_module(stage, inception)
            cin = inception.out_channels
        self.relus = torch.nn.ModuleList(torch.nn.ReLU() for _ in range(3))  # conv1, conv2 reduce, conv2
        self.load_state_dict(net.state_dict(), strict=True)
        self.eval()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        relu = self.relus
        x = images.flip(1) - self.bgr_mean
        x = tg.lrn(tg.max_pool(relu[0](self.conv1["7x7_s2"](x)), 3, 2))
        x = relu[2](self.conv2["3x3"](relu[1](self.conv2["3x3_reduce"](x))))
        x = tg.max_pool(tg.lrn(x), 3, 2)
        for stage in tg.INCEPTIONS:
            x = self.get_submodule(stage)(x)
            if stage in ("inception_3b", "inception_4e"):
                x = tg.max_pool(x, 3, 2)
        return x


def captum_deeplift(ctx: Context) -> np.ndarray:
    """captum's DeepLift (rescale rule) on the port with ReLU modules (`ReLUModules`), black baseline."""
    from captum.attr import DeepLift

    net = ReLUModules(ctx.net)
    return pixel_map(DeepLift(net).attribute(ctx.pair, baselines=0.0, target=list(CLASSES)))


PATCH = 32  # pixels: 7 x 7 = 49 features on 224 x 224
SHAPLEY_PATCH = 56  # 4 x 4 = 16 features: 17 passes per order (captum's are slow)
SHAPLEY_SAMPLES = 2


def patch_mask(ctx: Context, patch: int = PATCH) -> torch.Tensor:
    """captum's feature mask (1, 1, H, W): the index of each pixel's `patch`-pixel square, row-major."""
    h, w = ctx.images.shape[1:3]
    rows, cols = np.arange(h) // patch, np.arange(w) // patch
    ids = rows[:, None] * (-(-w // patch)) + cols[None, :]
    return torch.from_numpy(ids).view(1, 1, h, w)


def feature_map(attributions: torch.Tensor) -> np.ndarray:
    """captum's (N, 3, H, W) patch attributions -> (N, H, W): summed over channels (3 times each
    patch's value, which every channel holds), signed, rescaled."""
    return rescaled(attributions.detach().sum(dim=1).numpy())


def captum_feature_ablation(ctx: Context) -> np.ndarray:
    """Black baseline (captum's 0), PATCH-pixel patches."""
    from captum.attr import FeatureAblation

    with torch.no_grad():
        attributions = FeatureAblation(ctx.net).attribute(
            ctx.pair, baselines=0.0, target=list(CLASSES), feature_mask=patch_mask(ctx), perturbations_per_eval=7
        )
    return feature_map(attributions)


def shapley_orders(count: int, samples: int = SHAPLEY_SAMPLES, seed: int = 0) -> list[list[int]]:
    """The orders of the patches that our `shapley_sampling(key=seed)` draws, drawn here with
    jax.random as its doc says (split the key in `samples`, one permutation each), for captum."""
    import jax

    keys = jax.random.split(jax.random.key(seed), samples)
    return [np.asarray(jax.random.permutation(k, count)).tolist() for k in keys]


def captum_shapley_sampling(ctx: Context) -> np.ndarray:
    """Black baseline, SHAPLEY_PATCH-pixel patches, SHAPLEY_SAMPLES orders: the ones our key 0 draws,
    handed to captum's permutation generator (so the two sides average the same orders and the
    comparison is exact; with its own torch.randperm orders they agree only on average)."""
    from captum.attr import ShapleyValueSampling

    mask = patch_mask(ctx, SHAPLEY_PATCH)
    explainer = ShapleyValueSampling(ctx.net)
    orders = shapley_orders(int(mask.max()) + 1)
    explainer.permutation_generator = lambda num_features, num_samples: iter(orders[:num_samples])
    with torch.no_grad():
        attributions = explainer.attribute(
            ctx.pair,
            baselines=0.0,
            target=list(CLASSES),
            feature_mask=mask,
            n_samples=SHAPLEY_SAMPLES,
            perturbations_per_eval=4,
        )
    return feature_map(attributions)


SURROGATE_PATCH = 56  # 4 x 4 = 16 features
SURROGATE_SAMPLES = 32  # on/off vectors: one forward pass each, per example for captum
# captum's Lime and KernelShap maps (64 passes of the PyTorch network each, about a minute on the
# 2-core box) are kept, one value per patch, in this file; `python benchmarks/originals.py --cache`
# writes it. Our side always runs.
SURROGATE_CACHE = ROOT / "tests" / "data" / "captum_surrogates.json"


def lime_draws(count: int, samples: int = SURROGATE_SAMPLES, seed: int = 0) -> np.ndarray:
    """The on/off vectors our `lime(key=seed)` draws, drawn here with jax.random as its doc says."""
    import jax

    return np.asarray(jax.random.bernoulli(jax.random.key(seed), 0.5, (samples, count)))


def kernel_shap_draws(count: int, samples: int = SURROGATE_SAMPLES, seed: int = 0) -> np.ndarray:
    """The on/off vectors our `kernel_shap(key=seed)` draws, drawn here with jax.random as its doc
    says: all on, all off, then k on (k by the Shapley kernel), the k lowest ranks of a permutation."""
    import jax

    size_key, order_key = jax.random.split(jax.random.key(seed))
    k = np.arange(1, count)
    sizes = 1 + np.asarray(
        jax.random.categorical(size_key, np.log((count - 1) / (k * (count - k))), shape=(samples - 2,))
    )
    rows = [np.ones(count, bool), np.zeros(count, bool)]
    for size, key in zip(sizes, jax.random.split(order_key, samples - 2)):
        rows.append(np.asarray(jax.random.permutation(key, count)) < size)
    return np.stack(rows)


def replay(rows: np.ndarray) -> Callable:
    """A captum perturbation generator giving `rows` as (1, P) interpretable samples, from the start
    for each example (captum restarts a generator function per example)."""

    def generate(original_inp, **kwargs):
        for row in rows:
            yield torch.from_numpy(row.astype(np.int64)).view(1, -1)

    return generate


def captum_lime(ctx: Context) -> np.ndarray:
    """captum's Lime with its defaults (SkLearnLasso(alpha=0.01), cosine kernel of width 1.0), black
    baseline, SURROGATE_PATCH-pixel patches, SURROGATE_SAMPLES on/off vectors: the ones our key 0
    draws, handed to captum as its `perturb_func` (so the comparison is exact, not on average)."""
    from captum.attr import Lime

    mask = patch_mask(ctx, SURROGATE_PATCH)
    explainer = Lime(ctx.net, perturb_func=replay(lime_draws(int(mask.max()) + 1)))
    with torch.no_grad():
        attributions = explainer.attribute(
            ctx.pair, baselines=0.0, target=list(CLASSES), feature_mask=mask, n_samples=SURROGATE_SAMPLES,
            perturbations_per_eval=16,
        )  # fmt: skip
    return feature_map(attributions)


def captum_kernel_shap(ctx: Context) -> np.ndarray:
    """captum's KernelShap (its Shapley-kernel weights, SkLearnLinearRegression), black baseline,
    SURROGATE_PATCH-pixel patches, SURROGATE_SAMPLES on/off vectors: the ones our key 0 draws, in place
    of its own generator (the first two, all on and all off, are what captum's own gives first)."""
    from captum.attr import KernelShap

    mask = patch_mask(ctx, SURROGATE_PATCH)
    explainer = KernelShap(ctx.net)
    explainer.perturb_func = replay(kernel_shap_draws(int(mask.max()) + 1))
    with torch.no_grad():
        attributions = explainer.attribute(
            ctx.pair, baselines=0.0, target=list(CLASSES), feature_mask=mask, n_samples=SURROGATE_SAMPLES,
            perturbations_per_eval=16,
        )  # fmt: skip
    return feature_map(attributions)


SURROGATES = {"lime": captum_lime, "kernel_shap": captum_kernel_shap}
SURROGATE_SETTINGS = {"patch": SURROGATE_PATCH, "samples": SURROGATE_SAMPLES, "key": 0, "classes": list(CLASSES)}


def write_surrogate_cache(ctx: Context) -> None:
    """Run captum's Lime and KernelShap and keep each map's value per patch in SURROGATE_CACHE."""
    mask = patch_mask(ctx, SURROGATE_PATCH)[0, 0].numpy()
    firsts = [np.argmax(mask.reshape(-1) == p) for p in range(int(mask.max()) + 1)]  # a pixel of each patch
    entries = {}
    for name, run in SURROGATES.items():
        m = run(ctx).reshape(len(CLASSES), -1)
        entries[name] = dict(SURROGATE_SETTINGS, values=m[:, firsts].tolist())
    SURROGATE_CACHE.write_text(json.dumps(entries, indent=1) + "\n")


def cached_surrogate(name: str) -> Callable[..., Callable[[Context], np.ndarray]]:
    """The runner of captum's `name` for ORIGINALS: its maps from SURROGATE_CACHE (checked to be of
    these settings) or, `whole` (the timed rows), captum run live."""

    def read(ctx: Context) -> np.ndarray:
        entry = json.loads(SURROGATE_CACHE.read_text())[name]
        values = np.asarray(entry.pop("values"), np.float32)
        if entry != SURROGATE_SETTINGS:
            raise ValueError(f"{SURROGATE_CACHE} holds {entry}; run `python benchmarks/originals.py --cache`")
        return values[:, patch_mask(ctx, SURROGATE_PATCH)[0, 0].numpy()]

    return lambda whole=False: SURROGATES[name] if whole else read


# ---- pytorch-grad-cam -------------------------------------------------------------------------------


def grad_cam_library(make: Callable, target: str = "logit", whole: bool = False) -> Callable[[Context], np.ndarray]:
    """A runner of pytorch-grad-cam's CAM built by `make(model, target_layers)`, one call per class,
    on the head (maps at 7 x 7, Pillow-upsampled) or, `whole`, on the whole network (its own cv2 resize)."""

    def run(ctx: Context) -> np.ndarray:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

        kind = ClassifierOutputSoftmaxTarget if target == "softmax" else ClassifierOutputTarget
        model = Whole(ctx.net) if whole else Head(ctx.net)
        given = ctx.pair[:1] if whole else ctx.features
        out = []
        for c in CLASSES:
            cam = make(model, [model.tap])
            m = cam(given.clone().requires_grad_(True), [kind(c)])[0]
            out.append(m if whole else upsampled(m, ctx.images.shape[1:3]))
        return np.stack(out)

    return run


def finer_cam_library(whole: bool = False) -> Callable[[Context], np.ndarray]:
    """pytorch-grad-cam's FinerCAM with its defaults, `target_idx` each class."""

    def run(ctx: Context) -> np.ndarray:
        from pytorch_grad_cam import FinerCAM

        model = Whole(ctx.net) if whole else Head(ctx.net)
        given = ctx.pair[:1] if whole else ctx.features
        out = []
        for c in CLASSES:
            m = FinerCAM(model, [model.tap])(given.clone().requires_grad_(True), None, target_idx=c)[0]
            out.append(m if whole else upsampled(m, ctx.images.shape[1:3]))
        return np.stack(out)

    return run


class InModuleOrder(tg.Inception):
    """The port's inception module with its branches run in the order they are registered (1x1
    first; the port runs 1x1 last): the same function. pytorch-grad-cam's FullGrad pairs its biases
    (found in registration order) with the gradients its hooks catch (in the order of the forward
    pass), so on the port as written it multiplies 1x1's 64 biases by 3x3_reduce's 96 channels and
    fails."""

    def forward(self, x):
        b1 = F.relu(self["1x1"](x))
        b3 = F.relu(self["3x3"](F.relu(self["3x3_reduce"](x))))
        b5 = F.relu(self["5x5"](F.relu(self["5x5_reduce"](x))))
        return torch.cat([b1, b3, b5, F.relu(self["pool_proj"](tg.max_pool(x, 3, 1, 1)))], dim=1)


def fullgrad_library(whole: bool = False) -> Callable[[Context], np.ndarray]:
    """pytorch-grad-cam's FullGrad on the whole port (its 57 convolutions; the port has no batch
    norm), branches in module order (`InModuleOrder`), one call per class, its own cv2 resizes."""

    def run(ctx: Context) -> np.ndarray:
        from pytorch_grad_cam import FullGrad
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        net = copy.deepcopy(ctx.net)
        for module in net.modules():
            if isinstance(module, tg.Inception):
                module.__class__ = InModuleOrder
        targets = [[ClassifierOutputTarget(c)] for c in CLASSES]
        return np.stack([FullGrad(net, [])(ctx.pair[:1].clone(), t)[0] for t in targets])  # pyright: ignore[reportArgumentType]

    return run


# ---- torchcam ------------------------------------------------------------------------------------------

TORCHCAM_LAYER = "inception_4a/5x5_reduce"  # 16 channels: the Score-CAM family costs passes per channel
TORCHCAM_SAMPLES = 2


def torchcam_is_cam(ctx: Context) -> np.ndarray:
    """torchcam's ISCAM on the network seen from the mean-subtracted input (so its masking of the
    input blends towards the mean pixel, our `baseline="mean"`), at TORCHCAM_LAYER, TORCHCAM_SAMPLES samples."""
    from torchcam.methods import ISCAM

    mean = torch.tensor(MEAN_RGB).view(1, 3, 1, 1)
    model = Centred(ctx.net, mean).eval()
    layer = ctx.net.get_submodule(TORCHCAM_LAYER.replace("/", "."))
    out = []
    for c in CLASSES:
        with ISCAM(model, target_layer=layer, num_samples=TORCHCAM_SAMPLES) as cam:
            with torch.no_grad():
                model(ctx.pair[:1] - mean)
            out.append(upsampled(cam(class_idx=c)[0][0].numpy(), ctx.images.shape[1:3]))
    return np.stack(out)


SMOOTH_SAMPLES = 2


def torchcam_smooth_grad_cam_plus_plus(ctx: Context) -> np.ndarray:
    """torchcam's SmoothGradCAMpp at inception_5b-output, its default std 0.3, SMOOTH_SAMPLES draws (torch seeded with 0)."""
    from torchcam.methods import SmoothGradCAMpp

    out = []
    for c in CLASSES:
        torch.manual_seed(0)
        layer = ctx.net.get_submodule("inception_5b")
        with SmoothGradCAMpp(ctx.net, target_layer=layer, num_samples=SMOOTH_SAMPLES) as cam:
            scores = ctx.net(ctx.pair[:1])
            out.append(upsampled(cam(class_idx=c, scores=scores)[0][0].detach().numpy(), ctx.images.shape[1:3]))
    return np.stack(out)


SS_CAM_SAMPLES = 2


def ss_cam_noise(channels: int, size: tuple[int, ...], noise: float, samples: int = SS_CAM_SAMPLES, key: int = 0):
    """The mask noise our `ss_cam(noise=noise, key=key)` draws, drawn here with jax.random as its doc
    says (draw i = sample * channels + channel: `noise * normal(fold_in(key, i), (1, *size))`), as
    torchcam's `(1, channels, *size)` tensor per sample."""
    import jax

    root = jax.random.key(key)
    for s in range(samples):
        draws = [jax.random.normal(jax.random.fold_in(root, s * channels + c), (1, *size)) for c in range(channels)]
        yield torch.from_numpy(noise * np.stack(draws, axis=1))


def torchcam_ss_cam(ctx: Context) -> np.ndarray:
    """torchcam's SSCAM at TORCHCAM_LAYER, SS_CAM_SAMPLES samples, its std 2.0, on the network seen
    from the mean-subtracted input (masking blends towards the mean pixel: our `baseline="mean"`), with
    its noise distribution's `sample` handing it the noise our key 0 draws (`ss_cam_noise`), so the
    comparison is exact (with its own draws two runs of torchcam correlate only 0.8 to 0.9)."""
    from torchcam.methods import SSCAM

    mean = torch.tensor(MEAN_RGB).view(1, 3, 1, 1)
    model = Centred(ctx.net, mean).eval()
    layer = typing.cast(torch.nn.Conv2d, ctx.net.get_submodule(TORCHCAM_LAYER.replace("/", ".")))
    out = []
    for c in CLASSES:
        with SSCAM(model, target_layer=layer, num_samples=SS_CAM_SAMPLES) as cam:
            noise = ss_cam_noise(layer.out_channels, ctx.images.shape[1:3], cam.std)
            cam._distrib.sample = lambda shape, noise=noise: next(noise)  # pyright: ignore[reportAttributeAccessIssue]
            with torch.no_grad():
                model(ctx.pair[:1] - mean)
            out.append(upsampled(cam(class_idx=c)[0][0].numpy(), ctx.images.shape[1:3]))
    return np.stack(out)


class Centred(torch.nn.Module):
    """The port taking mean-subtracted RGB (what a normalised-input PyTorch model takes)."""

    def __init__(self, net: tg.TorchGoogLeNet, mean: torch.Tensor):
        super().__init__()
        self.net, self.mean = net, mean

    def forward(self, centred):
        return self.net(centred + self.mean)


class Original(NamedTuple):
    method: str  # our method's name
    options: dict  # our options, the original's settings
    theirs: Callable[..., Callable[[Context], np.ndarray]]  # (whole=...) -> runner giving (2, H, W) maps
    library: str
    sampled: bool = False  # compared by averages (the other side draws its own random numbers)
    max_difference: float = 2e-3  # the largest difference allowed between the two maps (values in [0, 1])
    peaks_on_the_animal: bool = False  # also check that each class's map peaks on its own animal


def pgc(name: str, target: str = "logit") -> Callable[..., Callable[[Context], np.ndarray]]:
    def build(whole: bool = False):
        import pytorch_grad_cam

        return grad_cam_library(getattr(pytorch_grad_cam, name), target, whole)

    return build


ORIGINALS: dict[str, Original] = {
    "saliency": Original("saliency", {}, lambda whole=False: captum_saliency, "captum Saliency"),
    "input_x_gradient": Original(
        "input_x_gradient", {"baseline": "mean"}, lambda whole=False: captum_input_x_gradient, "captum InputXGradient"
    ),
    "deeplift": Original(
        "deeplift",
        {"baseline": "black"},
        lambda whole=False: captum_deeplift,
        "captum DeepLift (ReLU modules)",
        peaks_on_the_animal=True,
    ),
    "gradient_shap": Original(
        "gradient_shap",
        {"samples": GSHAP_SAMPLES, "key": 0},
        lambda whole=False: captum_gradient_shap,
        "captum GradientShap",
        sampled=True,
    ),
    "feature_ablation": Original(
        "feature_ablation",
        {"patch": PATCH, "baseline": "black"},
        lambda whole=False: captum_feature_ablation,
        "captum FeatureAblation",
        peaks_on_the_animal=True,
    ),
    "shapley_sampling": Original(
        "shapley_sampling",
        {"patch": SHAPLEY_PATCH, "baseline": "black", "samples": SHAPLEY_SAMPLES, "key": 0},
        lambda whole=False: captum_shapley_sampling,
        "captum ShapleyValueSampling (our orders)",
        peaks_on_the_animal=True,
    ),
    "lime": Original(
        "lime",
        {"patch": SURROGATE_PATCH, "baseline": "black", "samples": SURROGATE_SAMPLES, "key": 0},
        cached_surrogate("lime"),
        "captum Lime (our on/off vectors)",
        peaks_on_the_animal=True,
    ),
    "kernel_shap": Original(
        "kernel_shap",
        {"patch": SURROGATE_PATCH, "baseline": "black", "samples": SURROGATE_SAMPLES, "key": 0},
        cached_surrogate("kernel_shap"),
        "captum KernelShap (our on/off vectors)",
    ),
    "grad_cam_elementwise": Original("grad_cam_elementwise", {}, pgc("GradCAMElementWise"), "GradCAMElementWise"),
    "eigen_grad_cam": Original("eigen_grad_cam", {}, pgc("EigenGradCAM"), "EigenGradCAM"),
    "ablation_cam": Original("ablation_cam", {}, pgc("AblationCAM"), "AblationCAM"),
    "kpca_cam": Original("kpca_cam", {}, pgc("KPCA_CAM"), "KPCA_CAM"),
    "fem": Original("fem", {}, pgc("FEM"), "FEM"),
    "finer_cam": Original("finer_cam", {}, finer_cam_library, "FinerCAM"),
    "shapley_cam": Original("shapley_cam", {}, pgc("ShapleyCAM"), "ShapleyCAM"),
    "is_cam": Original(
        "is_cam",
        {"layer": TORCHCAM_LAYER, "samples": TORCHCAM_SAMPLES},
        lambda whole=False: torchcam_is_cam,
        "torchcam ISCAM",
    ),
    "smooth_grad_cam_plus_plus": Original(
        "smooth_grad_cam_plus_plus",
        {"samples": SMOOTH_SAMPLES, "key": 0},
        lambda whole=False: torchcam_smooth_grad_cam_plus_plus,
        "torchcam SmoothGradCAMpp",
        max_difference=1e-2,  # its own noise draws (small at std 0.3 on 0..255 pixels)
    ),
    "fullgrad": Original("fullgrad", {}, fullgrad_library, "FullGrad (branches in module order)"),
    "ss_cam": Original(
        "ss_cam",
        {"layer": TORCHCAM_LAYER, "samples": SS_CAM_SAMPLES, "key": 0},
        lambda whole=False: torchcam_ss_cam,
        "torchcam SSCAM (our noise)",
    ),
    "shapley_cam (softmax)": Original(
        "shapley_cam", {"score": "softmax"}, pgc("ShapleyCAM", "softmax"), "ShapleyCAM, softmax target"
    ),
}


def blocks(m: np.ndarray, size: int = 16) -> np.ndarray:
    """(..., H, W) -> (..., H/size, W/size) block means: where a sampled map's mass lies."""
    *lead, h, w = m.shape
    return m.reshape(*lead, h // size, size, w // size, size).mean(axis=(-3, -1))


def correlation(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    """(median seconds over `repeats` calls, the first result)."""
    seconds, results = [], []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        results.append(fn())
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), results[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("--methods", nargs="+", default=sorted(ORIGINALS), choices=sorted(ORIGINALS))
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per side (after one warm-up for ours)")
    parser.add_argument("--no-timing", action="store_true", help="only the agreement figures (no whole-network runs)")
    parser.add_argument(
        "--cache", action="store_true", help=f"run captum's Lime and KernelShap into {SURROGATE_CACHE.name}"
    )
    args = parser.parse_args(argv)

    import jax

    import gradcam_jax as gj

    model, variables = gj.load_googlenet()
    images = gj.load_image(ROOT / "docs" / "images" / "cat_dog.jpg")[None].astype(np.float32)
    ctx = context(images)
    if args.cache:
        write_surrogate_cache(ctx)
        print(f"wrote {SURROGATE_CACHE}")
        return 0
    both = np.array([CLASSES], np.int32)
    print(f"{platform.processor() or platform.machine()}, jax {jax.__version__} on {jax.default_backend()}", flush=True)
    print("method | original | theirs s (whole network) | ours s | correlation dog / cat (layer resolution)")
    for label in args.methods:
        original = ORIGINALS[label]
        method = gj.METHODS[original.method]

        def ours(method=method, original=original):
            return np.asarray(method(model, variables, images, both, **original.options).map[0])

        ours_maps = ours()  # compiles
        theirs_maps = original.theirs()(ctx)
        ours_s = theirs_s = float("nan")
        if not args.no_timing:
            ours_s, _ = timed(ours, args.repeats)
            theirs_s, _ = timed(lambda original=original: original.theirs(whole=True)(ctx), args.repeats)
        figures = " / ".join(f"{correlation(ours_maps[k], theirs_maps[k]):.4f}" for k in range(2))
        if original.sampled:  # what the test compares: 16 x 16-pixel block means
            figures += (
                " (blocks "
                + " / ".join(f"{correlation(blocks(ours_maps[k]), blocks(theirs_maps[k])):.4f}" for k in range(2))
                + ")"
            )
        print(f"{label} | {original.library} | {theirs_s:.2f} | {ours_s:.2f} | {figures}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
