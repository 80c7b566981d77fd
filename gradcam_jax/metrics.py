"""Scores of maps, by family (docs/evaluation-suite.md), each metric returning per-image scores and
their aggregate:

- the originals of this library: deletion and insertion AUC, average drop and increase
  (`confidence_change`), ROAD, and the cascading model-randomisation sanity check (`parameter_groups`:
  the names its `stops` take);
- Quantus 0.6.0's families (issue 29): faithfulness, robustness (and captum's `sensitivity_max` and
  `infidelity`), localisation (a map against a segmentation mask), complexity, randomisation and
  axiomatic metrics, jitted, on the library's model kinds and any method.
"""

from gradcam_jax._src.evaluation.axiomatic import (
    completeness,
    input_invariance,
    non_sensitivity,
)
from gradcam_jax._src.evaluation.complexity import (
    complexity,
    effective_complexity,
    sparseness,
)
from gradcam_jax._src.evaluation.explain import (
    Scores,
)
from gradcam_jax._src.evaluation.faithfulness import (
    CurveScores,
    StepScores,
    faithfulness_correlation,
    faithfulness_estimate,
    monotonicity,
    monotonicity_correlation,
    pixel_flipping,
    sensitivity_n,
)
from gradcam_jax._src.evaluation.faithfulness_regions import (
    infidelity,
    irof,
    region_perturbation,
    sampled_infidelity,
    selectivity,
    sufficiency,
)
from gradcam_jax._src.evaluation.localisation import (
    attribution_localisation,
    auc,
    focus,
    mosaics,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)
from gradcam_jax._src.evaluation.randomisation import (
    LayerScores,
    efficient_mprt,
    mprt,
    random_logit,
    smooth_mprt,
)
from gradcam_jax._src.evaluation.robustness import (
    avg_sensitivity,
    consistency,
    continuity,
    local_lipschitz_estimate,
    max_sensitivity,
    relative_input_stability,
    relative_output_stability,
    relative_representation_stability,
    sensitivity_max,
)
from gradcam_jax._src.metrics import (
    ROAD_NEIGHBOURS,
    ROAD_NOISE,
    ROAD_PERCENTILES,
    Confidence,
    Curve,
    Road,
    SanityCheck,
    confidence_change,
    deletion,
    gaussian_blur,
    insertion,
    model_randomisation,
    noisy_linear_imputation,
    parameter_groups,
    road,
    road_removed,
    salience_ranks,
    spearman,
    trapezoid_auc,
)

__all__ = [
    "Confidence",
    "Curve",
    "CurveScores",
    "LayerScores",
    "ROAD_NEIGHBOURS",
    "ROAD_NOISE",
    "ROAD_PERCENTILES",
    "Road",
    "SanityCheck",
    "Scores",
    "StepScores",
    "attribution_localisation",
    "auc",
    "avg_sensitivity",
    "completeness",
    "complexity",
    "confidence_change",
    "consistency",
    "continuity",
    "deletion",
    "effective_complexity",
    "efficient_mprt",
    "faithfulness_correlation",
    "faithfulness_estimate",
    "focus",
    "gaussian_blur",
    "infidelity",
    "input_invariance",
    "insertion",
    "irof",
    "local_lipschitz_estimate",
    "max_sensitivity",
    "model_randomisation",
    "monotonicity",
    "monotonicity_correlation",
    "mosaics",
    "mprt",
    "noisy_linear_imputation",
    "non_sensitivity",
    "parameter_groups",
    "pixel_flipping",
    "pointing_game",
    "random_logit",
    "region_perturbation",
    "relative_input_stability",
    "relative_output_stability",
    "relative_representation_stability",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "road",
    "road_removed",
    "salience_ranks",
    "sampled_infidelity",
    "selectivity",
    "sensitivity_max",
    "sensitivity_n",
    "smooth_mprt",
    "sparseness",
    "spearman",
    "sufficiency",
    "top_k_intersection",
    "trapezoid_auc",
]
