"""train.deterministic for the TensorFlow backend: op determinism switched on in this process, now.

TF_DETERMINISTIC_OPS (set by fit._import_keras) is read once, when an op first asks, so a process that ran ops
before this run (tests, `tune`, benchmarks/repeat.py) would keep its earlier choice; TensorFlow's own switch works
at any time. The one TensorFlow import outside export/ (tests/test_architecture.py allows this module).
"""

from __future__ import annotations


def enable_op_determinism(backend: str) -> None:
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
