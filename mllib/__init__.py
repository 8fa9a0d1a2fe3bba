"""mllib: the tested code behind the *Learning to Learn* course.

Folders and modules, one job each:

* ``config``, ``device``: run profiles (``MLLIB_PROFILE``) and the device toggle (``MLLIB_DEVICE``).
* ``data``: Omniglot located, preprocessed once into a cache, split by fixed manifests.
* ``tasks``: task distributions (Omniglot N-way K-shot, sinusoids) and the ``TaskBatch`` structure.
* ``models``: the sinusoid MLP and the conv learner, parameters as plain dicts.
* ``inner``: the inner loop (fast adaptation).
* ``algorithms``: outer-loop meta-gradients for MAML, FOMAML, Reptile, Meta-SGD, ANIL, ProtoNets.
* ``train``, ``evaluate``, ``checkpoint``: meta-training, evaluation with confidence intervals.
"""
__version__ = "0.1.0"
