"""mllib: the tested code behind the *Learning to Learn* course.

The package map: every module and folder, one job each, in four groups (``tests/test_package_map.py``
keeps this list complete; ``tests/test_structure.py`` keeps the imports free of cycles).

Taught core (the notebooks read these line by line):

* ``tasks``: task distributions (Omniglot N-way K-shot, sinusoids) and the ``TaskBatch`` structure.
* ``models``: the sinusoid MLP and the conv learner, parameters as plain dicts.
* ``update_rules``: update rules as objects (SGD, Meta-SGD's learned rates, Adam): ``init`` and ``step``.
* ``inner``: the inner loop (fast adaptation): one ``adapt`` that takes any update rule.
* ``algorithms``: outer-loop meta-gradients and the meta-step for MAML, FOMAML, Reptile, Meta-SGD, ANIL,
  ProtoNets.
* ``train``, ``evaluate``: meta-training; evaluation with confidence intervals.

Taught extensions (what the notebooks build on the core):

* ``sine_experiments``, ``baselines``, ``feature_baselines``: the sinusoid experiments and the non-meta
  baselines (training from scratch, fine-tuning; nearest centroid and linear probe on frozen features).
* ``landscape``: the two-parameter sinusoid family whose loss surface can be drawn (notebook 04).
* ``imaml``: iMAML's proximal inner problem and its implicit meta-gradient by conjugate gradient, beside
  MAML's unrolled one, and the peak memory of their autograd graphs (notebook 04).
* ``learners``: which network each algorithm meta-trains on Omniglot.
* ``learned_optimizer``, ``incontext``: a learned update rule, and a meta-learner that is one forward
  pass (notebook 07).
* ``matching``: matching networks, the attention read-out the in-context learner shares, beside
  ProtoNets' prototypes (notebook 07).
* ``memorization``, ``icl_regression``, ``pfn``: tasks that invite memorization and the label permutation
  that cures it; in-context learning of linear regression beside hand-designed algorithms; a prior-fitted
  network beside the exact Gaussian-process posterior (notebook 09).
* ``beyond_images``: few-shot text classification on the standard library's docstrings: hashed character
  n-grams, a meta-learned feature weighting beside the raw features and tf-idf (notebook 09).
* ``representations``: linear CKA of a network before and after adaptation (notebook 06).
* ``rl``: meta-reinforcement learning on point navigation (notebook 08).
* ``compare``, ``relative_error``, ``per_task``: comparisons with their uncertainty, regression errors on
  the task family's scale, per-task comparisons of heavy-tailed errors.
* ``plots``, ``figure_text``, ``diagnostics``: learning curves on given axes; figure text in the
  reader's language (one dictionary of labels, applied when drawn); finite differences and graph memory.

Infrastructure (what every run stands on):

* ``config``, ``device``: run profiles (``MLLIB_PROFILE``), the device toggle (``MLLIB_DEVICE``), CPU threads.
* ``schedules``: the meta learning rate over a run (constant or cosine-annealed).
* ``data``: Omniglot located, built once into a cache, loaded, split by fixed manifests; a printed-glyph
  character set rendered from matplotlib's fonts (no download).
* ``fast_ops``: the conv learner's speed tricks, each computing the same function.
* ``checkpoint``, ``distributed``, ``local_workers``: run files that resume exactly; data-parallel
  meta-training (torchrun, or single-thread worker processes on this machine's cores, notebook 05).
* ``arguments``, ``progress``, ``timing``, ``training_loop``: argument checks, the progress bar, a training
  loop's time budget, and the loop around a training algorithm (its steps, bar, budget and Ctrl-C), each
  written once.
* ``files``, ``run_lock``, ``signals``: output locations checked before the work, atomic writes and
  errors that name the path; one run per output folder; Ctrl-C and SIGTERM handled alike.
* ``provenance``, ``publish``, ``results``: what this copy of mllib is; a finished run published as a
  checkpoint with its model card; the results page generated from those files.
* ``bench``, ``cli``: the meta-step benchmark; the command line (``python -m mllib``).

Course tooling (the course's delivery, not its lessons):

* ``course``: exercises, student release, Colab launch, execution, grading.
* ``checks``: the exercise checks the notebooks call.
* ``budget``: the notebooks' live-training table (steps per profile, measured costs).
"""
__version__ = "0.1.0"
