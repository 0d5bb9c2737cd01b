"""Every symbol and term the app uses, in plain words (no streamlit: a notebook can print them too).

One list feeds the Glossary page (ui/views/glossary.py) and the hover help of the controls
(``help=glossary.hint("eps")``), so a control and the glossary never disagree. Definitions
follow docs/sipp.md (pruning) and docs/nonsmoothness.md (nonsmoothness).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    key: str  # stable id for hint() and the page's anchors
    name: str  # the word or the symbol as the app writes it
    meaning: str  # plain words, one or two sentences
    section: str
    example: str = ""  # a number or a case that makes it concrete


SECTIONS = ("Pruning a layer", "Guarantees", "Budget and controls", "Measuring the result", "Nonsmoothness",
            "Trade-offs and retraining")

TERMS: tuple[Term, ...] = (
    # ---- pruning a layer
    Term("layer", "layer label", "A prunable layer is named by its module name in the model's code and its shape: "
         "'fc1 · Linear 784→300' has 784 inputs and 300 output units; 'conv2 · Conv2d 6→16, 5x5' turns 6 channels into "
         "16 with 5 × 5 kernels. The built-in networks name each layer by kind and rank (fc1, fc2, conv1); in your own nn.Sequential the module name is the position, like '1' or 'features.3'.",
         "Pruning a layer", "LeNet-300-100's layers are 'fc1 · Linear 784→300', 'fc2 · Linear 300→100', 'fc3 · Linear 100→10'."),
    Term("F", "F, J", "F is a layer's number of output units (neurons, or filters of a convolution); J is the number of "
         "inputs each unit reads (for a convolution: input channels × kernel height × kernel width).",
         "Pruning a layer", "'fc1 · Linear 784→300' has F = 300 and J = 784."),
    Term("edge", "edge, weight w", "One weight W_fj: the connection from input j to output unit f. Pruning removes "
         "edges by setting their weight to zero.", "Pruning a layer"),
    Term("row", "row", "One output unit together with one sign: the unit's positive weights form one row, its negative "
         "weights another. Every bound is about one row, and every row has its own budget.", "Pruning a layer",
         "A layer with 300 units has 600 rows."),
    Term("S", "S, |S|", "S is the small sample of inputs on which SiPP measures how much every weight matters; |S| is "
         "how many points it holds. They are drawn (with the seed) from a pool kept apart from the test points.",
         "Pruning a layer", "The formula gives |S| = 152 for LeNet-300-100 on 28 × 28 images."),
    Term("pseudo", "pseudo-point (a⁺, a⁻)", "Sensitivities need non-negative inputs. When a layer's input has negative "
         "entries (normalised images), each point is split into two: a⁺ keeps the positive entries, a⁻ the negated "
         "negative ones; every sum then runs over non-negative numbers.", "Pruning a layer"),
    Term("z", "z⁺, z⁻, z^σ (signal)", "For one unit and one input point, z⁺ is the sum of its positive weights times "
         "their inputs and z⁻ the same for the negative weights (as positive numbers); z^σ is whichever of the two the "
         "row is about. The pre-activation is z = z⁺ − z⁻.", "Pruning a layer"),
    Term("g", "g (relative contribution)", "The share of a row's signal z^σ that one edge carries on one input point: "
         "|w| × input / z^σ. On every point the shares of a row add up to 1.", "Pruning a layer"),
    Term("s", "s, sensitivity", "The largest share g an edge ever carries over the points of S (for a convolution, "
         "also over the positions of the kernel). An edge with a large s matters on some input; SiPP keeps those.",
         "Pruning a layer", "s = 0.2: on some point of S this weight carries a fifth of its row's signal."),
    Term("T", "T (total sensitivity)", "The sum of the sensitivities s over one row. It is at least 1 for a row with "
         "signal; a larger T means the importance is spread over many weights, so more samples are needed.",
         "Pruning a layer"),
    Term("P", "P_l, k_l", "P_l is the number of positions (patches) where a convolution applies its kernel, 1 for a "
         "Linear layer; k_l = kernel height × width, 1 for Linear. Both enter the log term L_l.", "Pruning a layer"),
    # ---- guarantees
    Term("eps", "ε (epsilon)", "The error a row's guarantee allows, relative to the row's signal: the pruned sum may "
         "differ from the original by at most ε × z^σ. In ε mode you choose it and SiPP finds the smallest network "
         "that meets it.", "Guarantees", "ε = 0.5: the pruned row stays within half of its signal."),
    Term("delta", "δ (delta)", "The failure probability: a sampled row meets its bound for a new point with "
         "probability at least 1 − δ. Smaller δ asks for more certainty, so bounds get larger or rows need more "
         "samples (only through a logarithm).", "Guarantees", "δ = 1e-16: essentially never."),
    Term("m", "m (samples per row)", "How many weights a row keeps: the number of samples a sampled row draws (its "
         "planned distinct weights), or the number of largest-s weights a deterministic row keeps.", "Guarantees"),
    Term("L", "L_l (log term)", "L_l = ln(8 (P_l + 1) k_l / δ): the logarithm through which δ and the layer's shape "
         "enter every bound of layer l. It grows slowly: halving δ adds ln 2 ≈ 0.69.", "Guarantees"),
    Term("eps_rand", "ε_rand(m) (sampling bound)", "The bound of a row that samples m weights in proportion to s and "
         "reweights them so the sum is right on average. It holds with probability 1 − δ for points drawn like S.",
         "Guarantees"),
    Term("eps_det", "ε_det(m) (deterministic bound)", "The bound of a row that keeps its m largest-s weights "
         "unchanged: the sum of the s of the weights it drops. It holds exactly on the points of S; on new points it "
         "is an estimate.", "Guarantees"),
    Term("cprime", "C′ (C-prime)", "A safety factor for deterministic rows in the hybrid method: a deterministic row "
         "counts as C′ × ε_det when the method chooses between sampling and keeping the top m (C′ = 3, as the "
         "authors compare them).", "Guarantees"),
    Term("hybrid", "hybrid, deterministic, sampled", "How a row was pruned. Deterministic: it keeps its m largest s. "
         "Sampled: it draws m weights at random in proportion to s and reweights them. Hybrid decides row by row, "
         "taking whichever has the smaller bound.", "Guarantees"),
    Term("eta", "η, η_max, δ_S", "η is the number of output units summed over the prunable layers (times positions for "
         "convolutions); η_max is the largest single layer's. With δ_S = 1e-16 they set |S| = ⌈3 ln(8 η η_max / δ_S)⌉.",
         "Guarantees", "LeNet-300-100: η = 410, η_max = 300, so |S| = 152."),
    Term("bound", "bound (guaranteed error)", "The largest error a row may have under its guarantee, relative to the "
         "row's own signal z^σ (z⁺ or z⁻); for the whole unit that makes ε (z⁺ + z⁻), not ε |z|. A bound of 1 or more promises little: it allows an error as large as the "
         "signal itself.", "Guarantees"),
    # ---- budget and controls
    Term("kappa", "κ (kappa), keep ratio", "The share of prunable weights (Linear and Conv2d weights) that stay after "
         "pruning. In keep-ratio mode you choose it; in ε mode it is the result.", "Budget and controls",
         "κ = 0.05 keeps 1 weight in 20."),
    Term("mode", "budget mode", "Keep ratio: you choose how many weights stay and SiPP spends them where the bounds "
         "gain most. ε and δ: you choose the guarantee and SiPP keeps as few weights as meet it.",
         "Budget and controls"),
    Term("patch", "patch reduction", "How a convolution's many positions are combined into one sensitivity: 'max' "
         "(the largest share anywhere, which the bounds need) or 'mean' (the authors' deterministic variant, with no "
         "bound).", "Budget and controls"),
    Term("alloc", "allocation", "How deterministic SiPP in keep-ratio mode splits the budget: 'global' keeps the "
         "largest s over all layers (the authors' choice), 'bound-optimal' gives each row the m that lowers the bounds "
         "most.", "Budget and controls"),
    Term("seed", "seed", "The number that fixes every random draw (S, the samples of sampled rows). The same seed and "
         "settings give the same numbers on every computer.", "Budget and controls"),
    # ---- measuring
    Term("heldout", "held-out points", "Test points never used to compute sensitivities: the errors measured on them "
         "show whether the guarantee holds beyond S.", "Measuring the result"),
    Term("measured", "measured error", "For each row and input point, |pruned sum − original sum| / z^σ, measured layer "
         "by layer with the original network's inputs; reported as the maximum, mean and 95th percentile.",
         "Measuring the result"),
    Term("failure", "failure rate", "The share of (row, point) pairs whose measured error exceeds the row's bound. "
         "For sampled rows the guarantee says it should be at most δ.", "Measuring the result"),
    Term("agreement", "agreement", "The share of test points on which the pruned network predicts the same class as "
         "the original.", "Measuring the result"),
    Term("logit_err", "relative logits error", "‖ŷ − y‖ / ‖y‖ on the test split: how far the pruned network's outputs "
         "(logits) moved, relative to their size.", "Measuring the result"),
    Term("csr", "CSR (sparse storage)", "Compressed sparse rows: a way to store and multiply a pruned matrix that "
         "skips its zeros. It only pays off when few enough weights are left.", "Measuring the result"),
    # ---- nonsmoothness
    Term("path", "path", "A straight line between two inputs (or through one input), sampled at N evenly spaced "
         "points; t runs from 0 to 1 along it.", "Nonsmoothness"),
    Term("peak", "peak (kink)", "A point on a path where an output bends sharply: its second difference stands above "
         "the noise threshold θ. A ReLU network bends where some unit switches on or off.", "Nonsmoothness"),
    Term("smp", "SMP", "Sum of magnitudes of peaks: how much an output's slope jumps along a path in total, per unit "
         "of input distance. Larger means less smooth.", "Nonsmoothness"),
    Term("theta", "θ (threshold)", "The size a second difference must exceed to count as a peak: the median plus 10 "
         "robust standard deviations of all second differences, and never below float round-off.", "Nonsmoothness"),
    Term("regions", "linear-region transition", "A step along a path where some ReLU changes sign (or a max pool "
         "switches its winner): the network moves from one linear piece to the next.", "Nonsmoothness"),
    Term("trajectory", "trajectory length", "How long a layer's output path is, divided by the input path's length: "
         "above 1 the layer stretches distances, below 1 it shrinks them.", "Nonsmoothness"),
    Term("mad", "MAD (median absolute deviation)", "The median of the distances of a set of numbers from their "
         "median: a measure of spread that a few large values (the peaks themselves) cannot inflate. 1.4826 × MAD is "
         "the robust standard deviation used in θ.", "Nonsmoothness"),
    Term("rel_smp", "relative SMP", "SMP divided by the logits' variation along the path (their mean absolute slope): "
         "it does not change when every logit is scaled by the same factor, so a pruned network whose logits "
         "merely shrank keeps its relative SMP.", "Nonsmoothness",
         "A logit that is flat and then rises with slope a, kinked in the middle of a path of length 2: SMP = a, "
         "variation a/2, relative SMP 2."),
    Term("jacobian", "input-output Jacobian", "The matrix of how much each output (logit) changes per unit change of "
         "each input, at one input point; its size (Frobenius norm) is a local measure of sensitivity to the input.",
         "Nonsmoothness"),
    # ---- trade-offs and retraining
    Term("potential", "prune potential", "The largest share of weights a method can prune while the mean accuracy "
         "drops by at most the chosen number of points, on the keep ratios that were run.",
         "Trade-offs and retraining"),
    Term("cascade", "prune-retrain cascade", "Prune, fine-tune with the mask fixed, then prune the fine-tuned network "
         "further, step by step.", "Trade-offs and retraining"),
    Term("pfp", "PFP (provable filter pruning)", "Pruning whole channels (filters of a convolution, units of a Linear "
         "layer) instead of single weights, with the same kind of guarantee: a channel's sensitivity s_j decides how "
         "many channels a layer keeps and which. Removing channels makes the network physically smaller.",
         "Trade-offs and retraining"),
    Term("s_j", "s_j (channel sensitivity)", "The largest share of a unit's same-sign input that one weight of input "
         "channel j ever carries on the points of S: the maximum of the edge sensitivities s over that channel's "
         "weights. Channels with small s_j go first.", "Trade-offs and retraining"),
    Term("global_eps", "global ε (PFP)", "In keep-ratio mode PFP finds one ε shared by all layers whose channel "
         "counts meet the budget. Like a row's bound, it is relative to the signal: a global ε of 1 or more allows an error "
         "as large as the signal itself, so it guarantees nothing useful.", "Trade-offs and retraining",
         "Global ε = 128 at 30% kept: the budget, not the guarantee, decided the sizes."),
    Term("flops", "FLOPs (MACs)", "Multiply-accumulate operations a network needs for one input: what a channel "
         "method's keep ratio can count instead of parameters, since a convolution's cost grows with the image's "
         "size.", "Trade-offs and retraining"),
    Term("rewind", "rewind epoch", "Training in isolation resets the kept weights to their values at this epoch of the "
         "dense training: 0 is their initial values, k > 0 their values after k epochs (late rewinding).",
         "Trade-offs and retraining"),
    Term("ticket", "training in isolation (ticket)", "Train the pruned network from its starting weights with the mask "
         "fixed, and compare with a random mask of the same size: does the method's mask train better?",
         "Trade-offs and retraining"),
)

_BY_KEY = {t.key: t for t in TERMS}


def term(key: str) -> Term:
    return _BY_KEY[key]


def hint(*keys: str) -> str:
    """Hover help for a control: the named terms' meanings, then where to read more."""
    parts = [f"**{_BY_KEY[k].name}**: {_BY_KEY[k].meaning}" for k in keys]
    return "\n\n".join(parts + ["All symbols: the Glossary page."])


def by_section() -> dict[str, list[Term]]:
    return {s: [t for t in TERMS if t.section == s] for s in SECTIONS}
