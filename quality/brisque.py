"""The ``brisque`` scorer: BRISQUE no-reference quality with the LIVE model that the ``brisque`` package ships.

BRISQUE (A. Mittal, A. K. Moorthy and A. C. Bovik, "No-reference image quality assessment in the spatial domain",
IEEE Trans. Image Processing 21(12), 2012) fits asymmetric generalised Gaussians to the locally normalised luminance
(MSCN coefficients) and to the products of neighbouring coefficients, at full and half scale (36 features), and maps
them with a support-vector regressor to a predicted DMOS: about 0 for a pristine photograph, about 100 for a heavily
distorted one; lower is better.

The regressor is the package's ``models/svm.txt``: byte for byte the ``allmodel`` of LIVE's 2011 BRISQUE software
release, trained on the whole LIVE Image Quality Assessment Database (release 2), with the package's
``models/normalize.pickle`` feature ranges. Both files are read from the installed package, checked against pinned
sha256 digests and never downloaded; the package's ``url=True`` mode, which fetches images with ``requests``, is never
used. libsvm-official parses the model; the regressor is evaluated here, so that a score repeats to the bit.

The 36 features are computed here with OpenCV separable filters instead of the package's ``scipy.signal.convolve2d``,
following the package's feature code step by step (zero-padded 7x7 Gaussian window with sigma 7/6, its AGGD moment
fit, OpenCV bicubic half-scale). ``brisque.BRISQUE().score`` agrees to within 1e-6 on photographs without flat areas
(on flat areas it follows rounding noise, see :func:`mscn`), takes about eight times as long, and fails outright on
numpy 2.4, where its ``float()`` of 1-element arrays raises.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from libsvm import svm as libsvm
from libsvm import svmutil
from PIL import Image

from quality.base import FieldType, ScoreContext, ScoreValue

_PACKAGE = "brisque"
# sha256 of the files inside brisque 0.2.0. svm.txt is identical to LIVE's ``allmodel``; a package release that
# changes either file changes what the score means, so it is refused until these pins (and the docs) are updated.
_SVM_SHA256 = "19526fb799c4c7992ccc109fcfecddb25976ba024b194cd3ee275d27e8909c8d"
_NORMALIZE_SHA256 = "a91753fe7088efe0b40e4d091315201fdb067966fc6785cf465e1eab060acda9"

# Images are measured at most this many pixels on their longest side (area-averaged downscale). LIVE's images, which
# the model was trained on, are typically 768x512, so generated images up to that size are scored as they are; larger
# ones are scored as seen at that size. The cost grows with the pixel count (768x768 takes ~2.3x 512x512).
MAX_SIDE = 768

# Images with a shorter side below this are not measured: the half scale would leave fewer than 16 pixels, barely
# twice the 7-pixel window, too few for the distribution fits to mean anything.
MIN_SIDE = 32

# What an image that cannot be measured (too small, flat, or a degenerate fit) scores: the worst end of the DMOS scale
# the model predicts. Such an image has shown no natural-image statistics, so it gets no credit for them.
BRISQUE_WORST = 100.0

# The package's MSCN window: 7x7 Gaussian, sigma 7/6, and the stabilising constant C = 1/255 on 0..1 luminance.
_WINDOW = 7
_WINDOW_SIGMA = 7.0 / 6.0
_MSCN_C = 1.0 / 255.0

# scikit-image's ``rgb2gray`` weights (ITU-R BT.709 primaries), which the package uses for luminance.
_GREY_WEIGHTS = (0.2125, 0.7154, 0.0721)

# The AGGD shape is searched in [0.2, 10], the grid of LIVE's MATLAB estimator (``estimateaggdparam.m``); a moment
# ratio outside the range the shapes reach takes the nearest end.
_ALPHA_LOW, _ALPHA_HIGH = 0.2, 10.0


class _RangesUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numbers only: the normalisation file is a dict of two lists of floats."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the BRISQUE normalisation file may not reference {module}.{name}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bundled_model_dir() -> Path:
    """The ``models`` folder of the installed ``brisque`` package, found without importing it (its import pulls in
    ``requests`` and patches ``scipy``)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {_PACKAGE!r} package is not installed; install brisque==0.2.0")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@dataclass(frozen=True)
class BrisqueModel:
    """The LIVE support-vector regressor, as arrays, and the feature ranges that scale its 36 inputs to [-1, 1]."""

    support_vectors: np.ndarray  # (n, 36)
    coefficients: np.ndarray  # (n,)
    rho: float
    gamma: float
    feature_min: np.ndarray
    feature_max: np.ndarray
    version: str

    def predict(self, features: np.ndarray) -> float:
        """The regressor's predicted DMOS for one 36-feature vector (lower is better).

        ``sum_i coef_i * exp(-gamma * |sv_i - x|^2) - rho``, what libsvm's ``svm_predict`` computes for an RBF
        epsilon-SVR (and ``svm_predict_probability``, which the package calls, returns for one). Evaluated here
        because the libsvm-official wheel sums the support vectors in an OpenMP loop with guided scheduling, whose
        order, and so whose last bits, change from call to call; ``math.fsum`` makes the sum exact and repeatable.
        """
        scaled = -1.0 + 2.0 * (features - self.feature_min) / (self.feature_max - self.feature_min)
        kernel = np.exp(-self.gamma * np.square(self.support_vectors - scaled).sum(axis=1))
        return math.fsum((self.coefficients * kernel).tolist()) - self.rho


def _as_arrays(model: Any, n_features: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Support vectors (dense), coefficients, rho and gamma of a libsvm RBF epsilon-SVR model."""
    if model.get_svm_type() != libsvm.svm_forms.EPSILON_SVR or model.param.kernel_type != libsvm.kernel_names.RBF:
        raise ValueError("the BRISQUE model has to be an RBF epsilon-SVR")
    support = np.zeros((model.l, n_features))
    for row, vector in enumerate(model.get_SV()):
        for index, value in vector.items():  # libsvm's sparse rows: 1-based feature index -> value
            if not 1 <= index <= n_features:
                raise ValueError(f"the BRISQUE model uses feature {index}, outside 1..{n_features}")
            support[row, index - 1] = value
    coefficients = np.array([coef for (coef,) in model.get_sv_coef()], dtype=np.float64)
    return support, coefficients, float(model.rho[0]), float(model.param.gamma)


def load_bundled_model() -> BrisqueModel:
    """Load ``svm.txt`` and ``normalize.pickle`` from the installed package after checking their pinned digests."""
    folder = bundled_model_dir()
    svm_path, ranges_path = folder / "svm.txt", folder / "normalize.pickle"
    for path, expected in ((svm_path, _SVM_SHA256), (ranges_path, _NORMALIZE_SHA256)):
        if not path.is_file():
            raise FileNotFoundError(f"the BRISQUE model file {path} is missing; reinstall brisque==0.2.0")
        actual = _sha256(path)
        if actual != expected:
            raise ValueError(f"the BRISQUE model file {path} has sha256 {actual} but has to be {expected} (the LIVE "
                             "model of brisque 0.2.0); pin brisque==0.2.0 or review the new model and update the pin")
    with ranges_path.open("rb") as fp:
        ranges = _RangesUnpickler(fp).load()
    feature_min = np.asarray(ranges["min_"], dtype=np.float64)
    feature_max = np.asarray(ranges["max_"], dtype=np.float64)
    if feature_min.shape != (36,) or feature_max.shape != (36,):
        raise ValueError(f"the BRISQUE feature ranges have to hold 36 values each, not {feature_min.shape}")
    svm = svmutil.svm_load_model(str(svm_path))  # libsvm's own parser reads the file
    if svm is None:
        raise ValueError(f"libsvm could not load the BRISQUE model {svm_path}")
    support, coefficients, rho, gamma = _as_arrays(svm, 36)
    version = f"1:brisque-{importlib.metadata.version(_PACKAGE)}:{_SVM_SHA256[:12]}"
    return BrisqueModel(support, coefficients, rho, gamma, feature_min, feature_max, version)


def _gaussian_taps() -> np.ndarray:
    """The package's normalised 7x7 Gaussian window is the outer product of these 7 taps with themselves."""
    offsets = np.arange(_WINDOW) - _WINDOW // 2
    taps = np.exp(-(offsets**2) / (2.0 * _WINDOW_SIGMA**2))
    return taps / taps.sum()


def mscn(grey: np.ndarray) -> np.ndarray:
    """Mean-subtracted, contrast-normalised coefficients ``(I - mu) / (sigma + C)`` of 0..1 luminance (paper eq. 1).

    Local mean and deviation use the Gaussian window with zero padding at the border (the package's
    ``convolve2d(..., "same")``); the deviation is ``sqrt(|mu^2 - E[I^2]|)`` as the package computes it. Where the
    whole window is one level, ``I - mu`` is exactly 0 but rounding leaves about 1e-16 of either sign; the fits sort
    coefficients by sign, and flat areas (a sky, a JPEG block reduced to its mean) hold thousands of them, so the
    package's score there follows rounding noise. Here such coefficients are set to their exact value, 0.
    """
    taps = _gaussian_taps()
    mean = cv2.sepFilter2D(grey, cv2.CV_64F, taps, taps, borderType=cv2.BORDER_CONSTANT)
    mean_sq = cv2.sepFilter2D(grey * grey, cv2.CV_64F, taps, taps, borderType=cv2.BORDER_CONSTANT)
    deviation = np.sqrt(np.abs(mean * mean - mean_sq))
    centred = grey - mean
    window = np.ones((_WINDOW, _WINDOW), dtype=np.uint8)
    highest = cv2.dilate(grey, window, borderType=cv2.BORDER_CONSTANT, borderValue=0.0)
    lowest = cv2.erode(grey, window, borderType=cv2.BORDER_CONSTANT, borderValue=0.0)
    centred[highest == lowest] = 0.0
    return centred / (deviation + _MSCN_C)


def _moment_ratio(alpha: float) -> float:
    """``Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a))``, increasing in the shape ``a``."""
    return math.exp(2.0 * math.lgamma(2.0 / alpha) - math.lgamma(1.0 / alpha) - math.lgamma(3.0 / alpha))


def _solve_alpha(target: float) -> float:
    """The shape whose moment ratio is ``target``, by bisection (the package uses ``scipy.optimize.root``)."""
    low, high = _ALPHA_LOW, _ALPHA_HIGH
    if target <= _moment_ratio(low):
        return low
    if target >= _moment_ratio(high):
        return high
    for _ in range(100):
        middle = 0.5 * (low + high)
        if _moment_ratio(middle) < target:
            low = middle
        else:
            high = middle
        if high - low < 1e-13:
            break
    return 0.5 * (low + high)


def aggd_fit(x: np.ndarray) -> tuple[float, float, float, float] | None:
    """Asymmetric generalised Gaussian fit by moment matching, as BRISQUE takes it from N.-E. Lasmar, Y. Stitou and
    Y. Berthoumieu, "Multiscale skewed heavy tailed model for texture analysis", Proc. IEEE ICIP 2009.

    Returns ``(alpha, mean, sigma_l^2, sigma_r^2)``, or None when one side of the distribution is empty or all of it
    is zero. As in the package, zeros count towards the right side.
    """
    flat = x.ravel()
    total = flat.size
    negative = np.minimum(flat, 0.0)
    n_left = int(np.count_nonzero(negative))
    n_right = total - n_left
    sq_total = float(np.square(flat).sum())
    sq_left = float(np.square(negative).sum())
    sq_right = sq_total - sq_left
    if n_left == 0 or n_right == 0 or sq_right <= 0.0:
        return None
    sigma_l = math.sqrt(sq_left / n_left)
    sigma_r = math.sqrt(sq_right / n_right)
    gamma = sigma_l / sigma_r
    r_hat = (float(np.abs(flat).sum()) / total) ** 2 / (sq_total / total)
    big_r = r_hat * (gamma**3 + 1.0) * (gamma + 1.0) / (gamma**2 + 1.0) ** 2
    alpha = _solve_alpha(big_r)
    # (sigma_r - sigma_l) * Gamma(2/a) / sqrt(Gamma(1/a) Gamma(3/a))
    mean = (sigma_r - sigma_l) * math.exp(
        math.lgamma(2.0 / alpha) - 0.5 * (math.lgamma(1.0 / alpha) + math.lgamma(3.0 / alpha))
    )
    return alpha, mean, sigma_l**2, sigma_r**2


def scale_features(grey: np.ndarray) -> list[float] | None:
    """The 18 features of one scale: the MSCN fit's ``(alpha, variance)`` and, for the horizontal, vertical, main-
    and secondary-diagonal neighbour products, ``(alpha, mean, sigma_l^2, sigma_r^2)``. None if a fit is degenerate.
    """
    m = mscn(grey)
    fields = (m, m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:])
    features: list[float] = []
    for index, field in enumerate(fields):
        fit = aggd_fit(field)
        if fit is None:
            return None
        alpha, mean, var_l, var_r = fit
        features += [alpha, 0.5 * (var_l + var_r)] if index == 0 else [alpha, mean, var_l, var_r]
    return features


def brisque_features(grey: np.ndarray) -> np.ndarray | None:
    """The 36 BRISQUE features of 0..1 luminance: 18 at full scale, 18 at half scale (OpenCV bicubic, unfiltered)."""
    half = cv2.resize(grey, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    full_scale, half_scale = scale_features(grey), scale_features(half)
    if full_scale is None or half_scale is None:
        return None
    features = np.array(full_scale + half_scale, dtype=np.float64)
    return features if bool(np.isfinite(features).all()) else None


def greyscale(image: Image.Image) -> np.ndarray:
    """0..1 luminance with scikit-image's ``rgb2gray`` weights, after dropping alpha and downscaling to ``MAX_SIDE``."""
    width, height = image.size
    if width == 0 or height == 0:
        raise ValueError(f"`image` has to be non-empty but is {width}x{height}")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    longest = max(width, height)
    if longest > MAX_SIDE:
        scale = MAX_SIDE / longest
        rgb = rgb.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX)
    red, green, blue = np.moveaxis(np.asarray(rgb, dtype=np.float64) / 255.0, -1, 0)
    # Written out: elementwise arithmetic gives the same bits whatever the thread count; a BLAS product need not.
    return _GREY_WEIGHTS[0] * red + _GREY_WEIGHTS[1] * green + _GREY_WEIGHTS[2] * blue


def brisque_quality(score: float) -> float:
    """BRISQUE's DMOS scale read as 0..1, higher better: ``clip(1 - score / 100, 0, 1)``.

    Linear over the 0 (pristine) to 100 (worst) range LIVE's release gives for the score; scores below 0, which the
    regressor gives some very clean images, count as 1, and scores above 100 as 0.
    """
    return min(1.0, max(0.0, 1.0 - score / BRISQUE_WORST))


class BrisqueScorer:
    """Scores ``{"brisque", "brisque_quality", "brisque_measured"}`` per image, for the release policy and the audit.

    ``brisque`` is the regressor's predicted DMOS (lower is better, not clamped), ``brisque_quality`` its 0..1
    reading (:func:`brisque_quality`), and ``brisque_measured`` is False when the image could not be measured
    (shorter side under ``MIN_SIDE``, constant luminance, or a degenerate fit); it then scores ``BRISQUE_WORST``
    and quality 0, so that an unmeasurable image can never pass a minimum-quality rule (fail closed). ``version``
    names this implementation, the package version and the model's sha256 prefix.
    """

    name = "brisque"
    fields: dict[str, FieldType] = {"brisque": "float", "brisque_quality": "float", "brisque_measured": "bool"}

    def __init__(self, model: BrisqueModel | None = None) -> None:
        self.model = model if model is not None else load_bundled_model()
        self.version = self.model.version

    def measure(self, image: Image.Image) -> dict[str, ScoreValue]:
        """The BRISQUE values of one image."""
        grey = greyscale(image)
        features = None
        if min(grey.shape) >= MIN_SIDE and float(np.ptp(grey)) > 0.0:
            features = brisque_features(grey)
        if features is None:
            return {"brisque": BRISQUE_WORST, "brisque_quality": 0.0, "brisque_measured": False}
        score = self.model.predict(features)
        return {"brisque": score, "brisque_quality": brisque_quality(score), "brisque_measured": True}

    def score(self, images: Sequence[Image.Image], context: ScoreContext) -> list[dict[str, ScoreValue]]:
        return [self.measure(image) for image in images]
