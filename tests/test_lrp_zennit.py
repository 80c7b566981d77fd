"""`methods.lrp` against the originals on PyTorch twins holding the same weights: zennit 0.5.1's
composites on the BVLC GoogLeNet port (`benchmarks/torch_googlenet.py`) and on a small ResNet with
batch norms, and captum's `LRP` with its three rules on a small CNN. Each: map correlation >= 0.999
and the largest absolute difference of the relevance, relative to its largest value, printed and held
loosely. And the GoogLeNet maps of cat_dog.jpg peak on the animal asked for.

Like for like, written down:
- zennit propagates relevance through a torch op no hook covers by its gradient, while this library's
  LRN and global average pool are layers (LRN: zennit's `Pass`, as its composites map normalisations;
  the pool: `Norm`, a proportional split). The zennit twin of GoogLeNet therefore holds its two LRNs
  as modules mapped to `Pass` in the composite's `layer_map` and its pool5 as an `AdaptiveAvgPool2d`
  (zennit: `Norm`): `torch_googlenet.HookableGoogLeNet`; `TorchGoogLeNet` calls both as functions.
- zennit's attributor starts from a one-hot relevance at the output, this library (as captum) from the
  logit: zennit's relevance is multiplied by the logit.
- The relevance is compared at the first convolution's input: Caffe's BGR image minus the mean (both
  twins preprocess inside); zennit's reaches the RGB input through the channel flip, flipped back here.
- the ResNet's residual sums are zennit's `Sum` module (`Norm`), what its `ResNetCanonizer` puts into
  torchvision's blocks; its batch norms are merged by `SequentialMergeBatchNorm`, as `lrp` folds them.
- captum's gamma and alpha1-beta0 rules modify the weights and keep the bias, zennit's (and this
  library's) also modify the bias: the captum twin has no biases, and its inputs are positive.

Set GRADCAM_JAX_LRP_ALL=1 to run every zennit composite on GoogLeNet (each compiles a program of its
own, ~30 s on two cores); by default EpsilonGammaBox (z^B, gamma and epsilon: three of the rules), with
all five on the ResNet; EpsilonPlus on GoogLeNet runs in the peak test below.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
zennit = pytest.importorskip("zennit")

from zennit import composites as zc  # noqa: E402
from zennit.attribution import Gradient  # noqa: E402
from zennit.canonizers import SequentialMergeBatchNorm  # noqa: E402
from zennit.layer import Sum  # noqa: E402
from zennit.rules import Pass  # noqa: E402

import gradcam_jax as gj  # noqa: E402
from gradcam_jax._src.relevance import composites as C  # noqa: E402
from gradcam_jax._src.relevance import rules as R  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ lives in the source tree
from conftest import CAT_BOX, DOG_BOX  # noqa: E402

from benchmarks import torch_googlenet as tg  # noqa: E402

DOG, CAT = 243, 282  # "bull mastiff", "tiger cat"
ALL = os.environ.get("GRADCAM_JAX_LRP_ALL") == "1"
NAMES = ["EpsilonPlus", "EpsilonAlpha2Beta1", "EpsilonPlusFlat", "EpsilonAlpha2Beta1Flat", "EpsilonGammaBox"]


def agreement(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    """Map (channel sum) correlation >= 0.999; the relevance's largest difference relative to its scale."""
    maps_ours, maps_theirs = ours.sum(-1).ravel(), theirs.sum(-1).ravel()
    correlation = float(np.corrcoef(maps_ours, maps_theirs)[0, 1])
    difference = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    print(f"{what}: map correlation {correlation:.9f}, max |difference| {difference:.2e} of the largest relevance")
    assert correlation >= 0.999, what
    assert difference <= 1e-2, what  # loose: the twins' forward passes differ in float32 rounding (logits ~2e-5)


def zennit_relevance(model, composite, images: np.ndarray, classes) -> tuple[np.ndarray, np.ndarray]:
    """zennit's relevance at the input (B, H, W, C), times each image's logit; and the logits."""
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    with Gradient(model, composite) as attributor:
        out, relevance = attributor(x, torch.eye(out_size(model))[list(classes)])  # type: ignore[misc]
    logits = out.detach().numpy()[np.arange(len(classes)), list(classes)]
    return relevance.detach().numpy().transpose(0, 2, 3, 1) * logits[:, None, None, None], logits


def out_size(model) -> int:
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].out_features


# ---- GoogLeNet -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zennit_googlenet():
    return tg.load_bvlc(hookable=True)


def box_bounds():
    """The preprocessed input's range, per BGR channel: 0..255 minus Caffe's mean."""
    mean = np.asarray(tg.BGR_MEAN, np.float32)
    return -mean, 255.0 - mean


def composites_for(name: str):
    """(this library's composite, zennit's) of one name, the Box bounds of GoogLeNet's first layer."""
    if name == "EpsilonGammaBox":
        low, high = box_bounds()
        theirs = zc.EpsilonGammaBox(
            low=torch.from_numpy(low).view(1, 3, 1, 1).expand(1, 3, 224, 224),
            high=torch.from_numpy(high).view(1, 3, 1, 1).expand(1, 3, 224, 224),
            layer_map=[(tg.LRN, Pass())],
        )
        return C.epsilon_gamma_box(tuple(low), tuple(high)), theirs
    return name, getattr(zc, name)(layer_map=[(tg.LRN, Pass())])


OURS: dict[str, gj.Explanation] = {}  # the GoogLeNet explanations, shared by the peak test


def googlenet_lrp(googlenet, cat_dog, name: str):
    if name not in OURS:
        model, variables = googlenet
        OURS[name] = gj.METHODS["lrp"](
            model, variables, cat_dog, np.array([[DOG, CAT]]), composite=composites_for(name)[0]
        )
    return OURS[name]


@pytest.mark.parametrize("name", NAMES if ALL else ["EpsilonGammaBox"])
def test_googlenet_equals_zennit(googlenet, cat_dog, zennit_googlenet, name):
    ours = googlenet_lrp(googlenet, cat_dog, name)
    theirs, logits = zennit_relevance(zennit_googlenet, composites_for(name)[1], cat_dog, [DOG])
    np.testing.assert_allclose(np.asarray(ours.scores)[0, 0], logits[0], rtol=1e-4)
    agreement(np.asarray(ours.gradients)[:, 0], theirs[..., ::-1], f"GoogLeNet {name}")


def peak(m):
    return np.unravel_index(np.argmax(m), m.shape)


def inside(point, box):
    return box[0] <= point[0] < box[1] and box[2] <= point[1] < box[3]


@pytest.mark.parametrize("name", ["EpsilonPlus", "EpsilonGammaBox"])
def test_googlenet_maps_peak_on_the_animal_asked_for(googlenet, cat_dog, name):
    """The maximum of the (block-smoothed: relevance is pixel-sharp) map lies on the dog for the dog
    class and on the cat for the cat class."""
    dog, cat = np.asarray(googlenet_lrp(googlenet, cat_dog, name).map[0])
    blur = lambda m: np.asarray(jax.image.resize(jnp.asarray(m), (14, 14), "linear"))  # noqa: E731
    for m, box, other in ((dog, DOG_BOX, CAT_BOX), (cat, CAT_BOX, DOG_BOX)):
        y, x = peak(blur(m))
        centre = ((y + 0.5) * 16, (x + 0.5) * 16)
        assert inside(centre, box) and not inside(centre, other), (name, centre)


# ---- a small ResNet with batch norms ------------------------------------------------------------------


class LinenBlock(nn.Module):
    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        pad = ((1, 1), (1, 1))
        h = nn.Conv(self.features, (3, 3), self.stride, pad, name="conv1")(x)
        h = nn.relu(nn.BatchNorm(use_running_average=True, name="bn1")(h))
        h = nn.BatchNorm(use_running_average=True, name="bn2")(nn.Conv(self.features, (3, 3), 1, pad, name="conv2")(h))
        if self.stride != 1 or x.shape[-1] != self.features:
            x = nn.Conv(self.features, (1, 1), self.stride, 0, name="down")(x)
            x = nn.BatchNorm(use_running_average=True, name="down_bn")(x)
        return nn.relu(h + x)


class LinenResNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Conv(8, (3, 3), 1, ((1, 1), (1, 1)), name="conv1")(x)
        h = nn.relu(nn.BatchNorm(use_running_average=True, name="bn1")(h))
        h = LinenBlock(8, name="block1")(h)
        h = LinenBlock(16, 2, name="block2")(h)
        return nn.Dense(5, name="head")(h.mean(axis=(1, 2)))


class TorchBlock(torch.nn.Module):
    """Registered in call order, conv then its batch norm (what SequentialMergeBatchNorm pairs)."""

    def __init__(self, cin, features, stride=1):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, features, 3, stride, 1)
        self.bn1 = torch.nn.BatchNorm2d(features)
        self.relu1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(features, features, 3, 1, 1)
        self.bn2 = torch.nn.BatchNorm2d(features)
        self.down = torch.nn.Conv2d(cin, features, 1, stride) if stride != 1 or cin != features else None
        self.down_bn = torch.nn.BatchNorm2d(features) if self.down is not None else None
        self.sum = Sum()
        self.relu2 = torch.nn.ReLU()

    def forward(self, x):
        h = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        if self.down is not None and self.down_bn is not None:
            x = self.down_bn(self.down(x))
        return self.relu2(self.sum(torch.stack([h, x], dim=-1)))


class TorchResNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, 1, 1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.relu = torch.nn.ReLU()
        self.block1 = TorchBlock(8, 8)
        self.block2 = TorchBlock(8, 16, 2)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.head = torch.nn.Linear(16, 5)

    def forward(self, x):
        h = self.block2(self.block1(self.relu(self.bn1(self.conv1(x)))))
        return self.head(self.pool(h).flatten(1))


def torch_state(params: dict, stats: dict, prefix: str = "") -> dict:
    """A torch state_dict from linen params and batch stats of the same tree: conv HWIO -> OIHW,
    Dense (in, out) -> (out, in), BatchNorm scale/bias/mean/var -> weight/bias/running_*."""
    state = {}
    t = lambda a: torch.from_numpy(np.array(a))  # noqa: E731
    for name, leaves in params.items():
        key = f"{prefix}{name}"
        if "kernel" in leaves:
            kernel = np.asarray(leaves["kernel"])
            state[f"{key}.weight"] = t(kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T)
            state[f"{key}.bias"] = t(leaves["bias"])
        elif "scale" in leaves:
            state[f"{key}.weight"], state[f"{key}.bias"] = t(leaves["scale"]), t(leaves["bias"])
            state[f"{key}.running_mean"], state[f"{key}.running_var"] = t(stats[name]["mean"]), t(stats[name]["var"])
        else:
            state |= torch_state(leaves, stats[name], f"{key}.")
    return state


@pytest.fixture(scope="module")
def resnet():
    x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3))
    variables = LinenResNet().init(jax.random.key(1), x)
    keys = iter(jax.random.split(jax.random.key(2), 64))

    def randomise(path, a):  # batch norms away from the identity: folding them is what is tested
        name = path[-1].key
        if name == "mean":
            return 0.2 * jax.random.normal(next(keys), a.shape)
        if name == "var":
            return jax.random.uniform(next(keys), a.shape, minval=0.5, maxval=2.0)
        if name == "scale":
            return jax.random.uniform(next(keys), a.shape, minval=0.5, maxval=1.5)
        if name == "bias":
            return 0.1 * jax.random.normal(next(keys), a.shape)
        return a

    variables = jax.tree_util.tree_map_with_path(randomise, variables)
    twin = TorchResNet()
    twin.load_state_dict(torch_state(variables["params"], variables["batch_stats"]), strict=True)
    twin.eval()
    images = np.asarray(x, np.float32)
    with torch.no_grad():
        theirs = twin(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(theirs, np.asarray(LinenResNet().apply(variables, x)), rtol=1e-4, atol=1e-5)
    return variables, twin, images


@pytest.mark.parametrize("name", NAMES)
def test_resnet_with_batch_norms_equals_zennit(resnet, name):
    variables, twin, images = resnet
    classes = [1, 3]
    canonizers = [SequentialMergeBatchNorm()]
    if name == "EpsilonGammaBox":
        ours = C.epsilon_gamma_box(0.0, 1.0)
        theirs = zc.EpsilonGammaBox(low=torch.zeros(1, 3, 16, 16), high=torch.ones(1, 3, 16, 16), canonizers=canonizers)
    else:
        ours, theirs = name, getattr(zc, name)(canonizers=canonizers)
    expected, _ = zennit_relevance(twin, theirs, images, classes)
    got = gj.METHODS["lrp"](LinenResNet(), variables, images, np.array(classes), composite=ours)
    agreement(np.asarray(got.gradients), expected, f"ResNet {name}")


# ---- captum's LRP ----------------------------------------------------------------------------------------


class LinenPlain(nn.Module):
    """Bias-free: conv -> ReLU -> max pool -> conv -> ReLU -> average -> dense."""

    @nn.compact
    def __call__(self, x):
        h = nn.max_pool(
            nn.relu(nn.Conv(8, (3, 3), 1, ((1, 1), (1, 1)), use_bias=False, name="conv1")(x)), (2, 2), (2, 2)
        )
        h = nn.relu(nn.Conv(8, (3, 3), 1, ((1, 1), (1, 1)), use_bias=False, name="conv2")(h))
        return nn.Dense(4, use_bias=False, name="head")(h.mean(axis=(1, 2)))


class TorchPlain(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.relu1 = torch.nn.ReLU()
        self.pool1 = torch.nn.MaxPool2d(2)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, 1, 1, bias=False)
        self.relu2 = torch.nn.ReLU()
        self.pool2 = torch.nn.AdaptiveAvgPool2d(1)
        self.head = torch.nn.Linear(8, 4, bias=False)

    def forward(self, x):
        h = self.pool1(self.relu1(self.conv1(x)))
        return self.head(self.pool2(self.relu2(self.conv2(h))).flatten(1))


CAPTUM_RULES = {"epsilon": R.Epsilon(1e-3), "gamma": R.Gamma(0.25), "alpha1_beta0": R.ZPlus()}


@pytest.mark.parametrize("rule", sorted(CAPTUM_RULES))
def test_plain_cnn_equals_captum(rule):
    captum_attr = pytest.importorskip("captum.attr")
    from captum.attr._utils import lrp_rules

    x = jax.random.uniform(jax.random.key(3), (2, 12, 12, 3))
    variables = LinenPlain().init(jax.random.key(4), x)
    params = variables["params"]
    twin = TorchPlain()
    state = {}
    for name in ("conv1", "conv2", "head"):
        kernel = np.asarray(params[name]["kernel"])
        state[f"{name}.weight"] = torch.from_numpy(
            np.array(kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T)
        )
    twin.load_state_dict(state, strict=True)
    twin.eval()
    make = {
        "epsilon": lambda: lrp_rules.EpsilonRule(1e-3),
        "gamma": lambda: lrp_rules.GammaRule(0.25),
        "alpha1_beta0": lambda: lrp_rules.Alpha1_Beta0_Rule(),
    }[rule]
    twin.conv1.rule, twin.conv2.rule = make(), make()  # type: ignore[attr-defined]
    twin.head.rule = lrp_rules.EpsilonRule(1e-3)  # type: ignore[attr-defined]
    images = np.asarray(x, np.float32)
    classes = [0, 2]
    theirs = captum_attr.LRP(twin).attribute(torch.from_numpy(images.transpose(0, 3, 1, 2)), target=classes)
    composite = C.Composite(conv=CAPTUM_RULES[rule], dense=R.Epsilon(1e-3))
    got = gj.METHODS["lrp"](LinenPlain(), variables, images, np.array(classes), composite=composite)
    agreement(np.asarray(got.gradients), theirs.detach().numpy().transpose(0, 2, 3, 1), f"captum {rule}")
