"""Exercise checks: the learner's function against a reference, with a clear verdict.

Notebooks call them as ``from mllib import checks`` then ``checks.check_<exercise>(fn)``;
every name is re-exported here, so that is the only import anyone needs.

Layout:

* ``core``: the framework -- :class:`Case`, :class:`CheckResult`, :func:`run_check`,
  :func:`make_cases`, :func:`random_tensor`, :func:`compare_values`, strict mode
  (``MLLIB_CHECKS_STRICT``) and the record file (``MLLIB_CHECKS_RECORD``). Its docstring
  describes the verdicts and has the ten-line pattern for a new check.
* ``nbNN_<notebook>``: the checks of one notebook (``notebooks/NN_<notebook>.ipynb``), each a
  reference implementation ``_<exercise>_reference``, a seeded case factory and one
  ``run_check`` call: ``nb01_learning_bias``, ``nb02_task_sampling``, ``nb03_inner_loop``,
  ``nb04_outer_loop``, ``nb05_maml_omniglot``, ``nb06_learning_the_learning_algorithm``,
  ``nb07_learning_the_update_rule``, ``nb08_meta_reinforcement_learning``.
* ``sine_inputs``: the seeded ``SineMLP`` and sinusoid inputs shared by notebooks 03 and 04.

A new exercise's check goes into its notebook's module (a new notebook gets a new module);
import it below and add its name to ``__all__``.
"""
from .core import (
    ERROR, FAILED, NOT_IMPLEMENTED, NOT_IMPLEMENTED_TEXT, PASSED, RECORD_ENV, STATUS_MARK, STRICT_ENV,
    Case, CheckResult, compare_values, describe_case, make_cases, random_tensor, run_check, strict_mode,
)
from .nb01_learning_bias import _polynomial_fit_reference, check_polynomial_fit
from .nb02_task_sampling import (
    _label_remap_reference, _support_query_reference, check_label_remap, check_support_query_split,
)
from .nb03_inner_loop import (
    _adaptation_curve_reference, _sgd_step_reference, check_adaptation_curve, check_sgd_step,
)
from .nb04_outer_loop import (
    _reptile_update_reference, _task_meta_gradient_reference, check_reptile_update, check_task_meta_gradient,
)
from .nb05_maml_omniglot import _ci95_reference, _prototypes_reference, check_confidence_interval, check_prototypes
from .nb06_learning_the_learning_algorithm import (
    _anil_step_reference, _metasgd_step_reference, check_anil_step, check_metasgd_step,
)
from .nb07_learning_the_update_rule import (
    _learned_update_reference, _support_attention_reference, check_learned_update, check_support_attention,
)
from .nb08_meta_reinforcement_learning import (
    _adapted_policy_reference, _reinforce_loss_reference, check_adapted_policy, check_reinforce_loss,
)

# The reference implementations (``_<exercise>_reference``) are re-exported too, though not in
# __all__: tests compare against them and a notebook cell may import one by this path.
__all__ = [
    "Case", "CheckResult", "run_check", "make_cases", "random_tensor", "compare_values", "describe_case",
    "strict_mode", "check_confidence_interval", "check_label_remap", "STRICT_ENV", "RECORD_ENV",
    "check_support_query_split", "check_polynomial_fit", "check_sgd_step", "check_adaptation_curve",
    "check_task_meta_gradient", "check_reptile_update", "check_prototypes", "check_metasgd_step",
    "check_anil_step", "check_learned_update", "check_support_attention", "check_reinforce_loss",
    "check_adapted_policy",
]
