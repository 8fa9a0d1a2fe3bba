"""mllib: the tested code behind the *Learning to Learn* course.

Folders and modules, one job each, in the order the course meets them (imports point down this list,
never back up; ``tests/test_structure.py`` checks it):

* ``config``, ``device``: run profiles (``MLLIB_PROFILE``), the device toggle (``MLLIB_DEVICE``), CPU threads.
* ``schedules``: the meta learning rate over a run (constant or cosine-annealed).
* ``data``: Omniglot located, built once into a cache, loaded, split by fixed manifests.
* ``tasks``: task distributions (Omniglot N-way K-shot, sinusoids) and the ``TaskBatch`` structure.
* ``models``: the sinusoid MLP and the conv learner, parameters as plain dicts (speed tricks in ``fast_ops``).
* ``inner``: the inner loop (fast adaptation).
* ``algorithms``: outer-loop meta-gradients and the meta-step for MAML, FOMAML, Reptile, Meta-SGD, ANIL,
  ProtoNets.
* ``evaluate``, ``train``, ``checkpoint``: evaluation with confidence intervals, meta-training, run files.
* ``sine_experiments``, ``baselines``: the sinusoid experiments and the non-meta baselines.
* ``plots``, ``diagnostics``: learning curves on given axes; finite differences and graph memory.
* ``arguments``, ``progress``: argument checks and the progress bar, each written once.
* ``files``, ``run_lock``, ``signals``: output locations checked before the work, atomic writes and
  errors that name the path; one run per output folder; Ctrl-C and SIGTERM handled alike.
"""
__version__ = "0.1.0"
