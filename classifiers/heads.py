"""Heads on frozen features: what `classifiers.adapt` fits to teach a finished detector a new generator family
without changing a weight of it, and the novelty score it fits on real faces alone.

A detector blind (or inverted) on a new generator often still separates that generator in its own features:
only its last layer points the wrong way. So the features are read from networks that are never changed - the
source detector's penultimate layer, one block of the GAN's stage-1 discriminator (each channel's mean and
spread), or both - and fitted on:

  a head     ridge-logistic regression (Newton's method, numpy) on the labelled faces, its L2 strength
             chosen on validation by the caller;
  a novelty  the Mahalanobis distance to real faces in their principal components, fit on reals only: "unlike
             any real face this network knows", a score that never reads a fake.

Each is folded into one Keras model (the extractors' layers as they are, a Dense or the kit's
MahalanobisScore on top), saved and loaded like any detector.
"""
import keras
import numpy as np
from keras import layers

from classifiers.layers import ChannelMoments, EitherFires, MahalanobisScore

# ridge strengths tried, times the number of features (a standardised face's squared length): on the mean
# log-loss, so they mean the same for 256 pooled features as for 16,384 flattened ones
L2_GRID = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
NEWTON_STEPS = 50
# where there are more faces than this, the head is fit in their leading principal directions: each Newton step
# costs faces x components^2, so the whole training side of a family (thousands of faces) stays within seconds
HEAD_COMPONENTS = 512
SHRINKAGE = 0.1  # covariance shrinkage towards its mean variance: a few dozen faces do not pin down many dimensions
NOVELTY_COMPONENTS = 32  # principal components of the reals the distance is measured in (at most half the reals)
NOVELTY_FALSE_ALARMS = 0.05  # the novelty threshold accuses this share of the reals it was fit on
BLOCK_SUFFIXES = ("_act", "_out")  # the last layer of a discriminator block: DCGAN's LeakyReLU, a residual ReLU


# -- what the heads read ------------------------------------------------------------------------------------

def detector_features(detector, name="source_features"):
    """[0, 255] faces -> what the detector's last layer (one Dense unit) reads: its penultimate features."""
    last = detector.layers[-1]
    if not isinstance(last, layers.Dense) or last.units != 1:
        raise ValueError(f"{detector.name} does not end in one Dense unit, so it has no penultimate features")
    extractor = keras.Model(detector.input, last.input, name=name)
    extractor.trainable = False
    return extractor


def discriminator_blocks(discriminator):
    """The outputs of a GAN discriminator's blocks (down1_act, ..., or stageN_block1_out), first block first."""
    return [layer.output for layer in discriminator.layers if layer.name.endswith(BLOCK_SUFFIXES)]


def block_number(discriminator, block):
    """The discriminator block `block` names (1 = first; 0 = the last); ValueError where it has no such block."""
    count = len(discriminator_blocks(discriminator))
    if not count:
        raise ValueError("this discriminator has no named blocks (trained before block features existed)")
    if not 0 <= block <= count:
        raise ValueError(f"this discriminator has blocks 1 to {count}, not {block}")
    return block or count


def to_gan_range(inputs):
    """[0, 255] faces -> the [-1, 1] a GAN's networks read."""
    return layers.Rescaling(1 / 127.5, offset=-1, name="to_gan_range")(inputs)


def discriminator_features(discriminator, block, name="gan_features"):
    """[0, 255] faces -> block `block` (1 = first; 0 = the last) of a GAN discriminator, as each channel's mean
    and spread over the positions (ChannelMoments)."""
    block = block_number(discriminator, block)
    trunk = keras.Model(discriminator.input, discriminator_blocks(discriminator)[block - 1],
                        name=f"discriminator_block{block}")
    trunk.trainable = False
    inputs = keras.Input(discriminator.input_shape[1:], name="image")
    return keras.Model(inputs, ChannelMoments(name=f"block{block}_moments")(trunk(to_gan_range(inputs))), name=name)


def joined(extractors, inputs):
    """Every extractor's features of `inputs`, side by side (float32)."""
    outs = [extractor(inputs) for extractor in extractors]
    return outs[0] if len(outs) == 1 else layers.Concatenate(name="features", dtype="float32")(outs)


def feature_model(extractors):
    """[0, 255] faces -> the extractors' features side by side: what the heads are fit on."""
    inputs = keras.Input(extractors[0].input_shape[1:], name="image")
    return keras.Model(inputs, joined(extractors, inputs), name="frozen_features")


# -- a logistic head -----------------------------------------------------------------------------------------

def standardiser(features):
    """(mean, scale) per feature of the fitting faces. A unit (nearly) silent on them gets a floor of a hundredth
    of the typical scale, so a face that wakes it cannot swing the head."""
    features = np.asarray(features, np.float64)
    spread = features.std(0)
    floor = 0.01 * (spread.mean() if spread.any() else 1.0)
    return features.mean(0), np.maximum(spread, floor)


def fit_logistic(x, y, weight, l2, offset=0.0, start=None):
    """(w, b) minimising the weighted mean log-loss of sigmoid(offset + x w + b) plus l2/2 |w|^2, by Newton's
    method with step halving, from `start` (w, b) or zero."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    weight = np.asarray(weight, np.float64) / np.sum(weight)
    xa = np.hstack([x, np.ones((len(x), 1))])
    penalty = np.r_[np.full(x.shape[1], l2), 0.0]  # the bias is not shrunk

    def objective(theta):
        f = offset + xa @ theta
        return weight @ (np.logaddexp(0, f) - y * f) + 0.5 * penalty @ theta ** 2

    theta = np.zeros(xa.shape[1]) if start is None else np.r_[start[0], start[1]]
    for _ in range(NEWTON_STEPS):
        # clipped: a face the start already judges with certainty would make p (1 - p) subnormal, and
        # arithmetic on subnormal numbers is a hundred times slower
        p = 1 / (1 + np.exp(-np.clip(offset + xa @ theta, -30, 30)))
        grad = xa.T @ (weight * (p - y)) + penalty * theta
        hess = (xa.T * (weight * p * (1 - p))) @ xa + np.diag(penalty + 1e-12)
        step, rate, now = np.linalg.solve(hess, grad), 1.0, objective(theta)
        while objective(theta - rate * step) > now and rate > 1e-4:
            rate /= 2
        theta -= rate * step
        if np.abs(rate * step).max() < 1e-6:
            break
    return theta[:-1], float(theta[-1])


def fit_heads(features, y, weight, prior=None, *, l2_grid=L2_GRID):
    """{l2: a logistic head (mean, scale, w, b)} on standardised features, one per ridge strength (times the
    number of features). prior: the weights (on the raw features) the ridge pulls towards instead of zero -
    the source's own last layer, so a strong ridge gives back the source's verdicts and a weak one learns the
    shots (L2-SP, Li et al. 2018). Where there are more features than faces the change lies in the span of the
    faces' rows, so it is solved there (one SVD for every strength): 16,384 flattened features cost what the
    few hundred faces do; beyond HEAD_COMPONENTS faces, in their leading HEAD_COMPONENTS directions."""
    mean, scale = standardiser(features)
    x = (np.asarray(features, np.float64) - mean) / scale
    start = np.zeros(len(mean)) if prior is None else np.asarray(prior, np.float64) * scale
    offset = x @ start
    basis = None
    if x.shape[1] > min(x.shape[0], HEAD_COMPONENTS):
        basis = leading_directions(x, HEAD_COMPONENTS)
        x = x @ basis
    heads, previous = {}, None
    for l2 in sorted(l2_grid, reverse=True):  # strongest first, each from the last: a few Newton steps apiece
        previous = fit_logistic(x, y, weight, l2 * len(mean), offset, previous)
        change, b = previous
        heads[l2] = (mean, scale, start + (basis @ change if basis is not None else change), b)
    return {l2: heads[l2] for l2 in l2_grid}


def leading_directions(x, count, rows=4096):
    """(D, <= count) orthonormal: the leading right singular vectors of x (N, D), from the eigenvectors of the
    rows' Gram matrix (N^2 D in float32 instead of an SVD's larger constant in float64). Beyond `rows` faces,
    an evenly spaced `rows` of them say where the features vary."""
    x = np.asarray(x[:: max(1, -(-len(x) // rows))], np.float32)
    values, vectors = np.linalg.eigh((x @ x.T).astype(np.float64))
    order = np.argsort(values)[::-1][:count]
    keep = order[values[order] > values[order[0]] * 1e-10]
    directions = (x.T.astype(np.float64) @ vectors[:, keep]) / np.sqrt(values[keep])
    return np.linalg.qr(directions)[0]  # orthonormal again after float32 rounding


def detector_head(detector):
    """The weights of a detector's last layer (one Dense unit) on its penultimate features."""
    kernel = detector.layers[-1].get_weights()[0]
    return kernel.reshape(-1).astype(np.float64)


def head_logits(features, head):
    """The head's logits on raw features: head = (mean, scale, w, b) as fit_heads gives it."""
    mean, scale, w, b = head
    return ((np.asarray(features, np.float64) - mean) / scale) @ w + b


def head_model(extractors, head, name):
    """[0, 255] faces -> P(fake): the frozen extractors, then one Dense unit holding the head with its
    standardisation folded in (w / scale, b - sum(w * mean / scale))."""
    mean, scale, w, b = head
    inputs = keras.Input(extractors[0].input_shape[1:], name="image")
    dense = layers.Dense(1, activation="sigmoid", dtype="float32", name="p_fake", trainable=False)
    outputs = dense(joined(extractors, inputs))
    dense.set_weights([(w / scale)[:, None].astype("float32"), np.array([b - np.sum(w * mean / scale)], "float32")])
    return keras.Model(inputs, outputs, name=name)


def logit(p):
    """P(fake) -> its logit, clipped where float32 rounds a probability to 0 or 1."""
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def either_logits(source_logits, family_logits, rule):
    """The logit of either_model's P(fake) from its two heads' logits; rule = (t_source, t_family, below) as
    EitherFires holds it."""
    t_a, t_b, below = rule
    margin = np.asarray(family_logits, np.float64) - t_b
    return np.maximum(np.asarray(source_logits, np.float64) - t_a, np.where(margin > 0, margin, margin * below))


def either_model(source_features, detector, extractors, family_head, rule, name):
    """[0, 255] faces -> P(fake) of two heads side by side, "fake if either says fake" (EitherFires): the
    source detector's own last layer on its own penultimate features (its weights copied, unchanged), and a
    family head fit on the extractors' features; rule = (t_source, t_family, below): the heads' thresholds
    (logits), each chosen on its own family's validation side, and the family head's weight below its own
    (EitherFires). Where the family head is quiet, the source's verdict stands."""
    inputs = keras.Input(source_features.input_shape[1:], name="image")
    own = detector.layers[-1]
    source_head = layers.Dense(1, dtype="float32", name="source_head", trainable=False)
    family_dense = layers.Dense(1, dtype="float32", name="family_head", trainable=False)
    penultimate = source_features(inputs)
    # an extractor both heads read is called once
    outs = [penultimate if extractor is source_features else extractor(inputs) for extractor in extractors]
    features = outs[0] if len(outs) == 1 else layers.Concatenate(name="features", dtype="float32")(outs)
    a, b = source_head(penultimate), family_dense(features)
    source_head.set_weights(own.get_weights())
    mean, scale, w, bias = family_head
    family_dense.set_weights([(w / scale)[:, None].astype("float32"),
                              np.array([bias - np.sum(w * mean / scale)], "float32")])
    either = EitherFires(name="p_fake")
    outputs = either([a, b])
    either.set_weights([np.asarray(rule, "float32")])
    return keras.Model(inputs, outputs, name=name)


# -- a novelty score from real faces -----------------------------------------------------------------------

def fit_gaussian(features, shrinkage=SHRINKAGE):
    """(mean, precision matrix, [loc, scale] of the fitting faces' own distances) of features (N, D)."""
    features = np.asarray(features, np.float64)
    mean = features.mean(0)
    cov = np.cov(features - mean, rowvar=False).reshape(features.shape[1], features.shape[1])
    cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / len(cov) * np.eye(len(cov))
    precision = np.linalg.inv(cov)
    distance = mahalanobis(features, mean, precision)
    return mean, precision, np.array([np.median(distance), max(distance.std(), 1e-6)])


def mahalanobis(features, mean, precision):
    diff = np.asarray(features, np.float64) - mean
    return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", diff, precision, diff), 0))


def fit_novelty(real_features):
    """(projection (D, d), its bias, the Gaussian, the threshold) of real faces' features: their d leading
    principal components (d at most half the faces), a shrunk Gaussian there, and the score above which
    NOVELTY_FALSE_ALARMS of these reals lie."""
    real_features = np.asarray(real_features, np.float64)
    if len(real_features) < 4:
        raise ValueError(f"a novelty score needs at least 4 real faces, not {len(real_features)}")
    centre = real_features.mean(0)
    _, _, vt = np.linalg.svd(real_features - centre, full_matrices=False)
    projection = vt[:min(NOVELTY_COMPONENTS, len(real_features) // 2, vt.shape[0])].T
    bias = -centre @ projection
    reduced = real_features @ projection + bias
    mean, precision, loc_scale = fit_gaussian(reduced)
    scores = 1 / (1 + np.exp(-(mahalanobis(reduced, mean, precision) - loc_scale[0]) / loc_scale[1]))
    return projection, bias, (mean, precision, loc_scale), float(np.quantile(scores, 1 - NOVELTY_FALSE_ALARMS))


def novelty_model(extractors, novelty, name):
    """[0, 255] faces -> a score rising with their distance from the reals (fit_novelty), in (0, 1)."""
    projection, bias, gaussian, _ = novelty
    inputs = keras.Input(extractors[0].input_shape[1:], name="image")
    project = layers.Dense(projection.shape[1], dtype="float32", name="principal_components", trainable=False)
    score = MahalanobisScore(projection.shape[1], name="p_fake", trainable=False)
    outputs = score(project(joined(extractors, inputs)))
    project.set_weights([projection.astype("float32"), bias.astype("float32")])
    score.set_weights([part.astype("float32") for part in gaussian])
    return keras.Model(inputs, outputs, name=name)
