"""The one backend-specific step of Grad-CAM: the gradient of each image's class score w.r.t. its feature map.

Everything else in Grad-CAM (splitting the model, weighting channels, resizing) is backend-agnostic
Keras and numpy; `keras.ops` has no gradient, so each backend takes it its own way:
- tensorflow: a `tf.GradientTape` watches the feature maps while the head runs eagerly;
- jax: `jax.grad` of a pure function of the maps, the head run with `stateless_call` on its
  variables' current values.
This is the only module outside export/ that imports TensorFlow (tests/test_architecture.py checks it).
"""

from __future__ import annotations

import numpy as np

from edgelabels.errors import UserError


def class_gradients(head, feature_maps: np.ndarray, class_indices: np.ndarray) -> np.ndarray:
    """d score[i, class_i] / d feature_maps[i] for each image, as a numpy array shaped like feature_maps."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        maps = tf.convert_to_tensor(feature_maps)
        with tf.GradientTape() as tape:
            tape.watch(maps)
            scores = head(maps, training=False)
            chosen = tf.reduce_sum(tf.gather(scores, class_indices, axis=1, batch_dims=1))
        return tape.gradient(chosen, maps).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        trainable = [v.value for v in head.trainable_variables]
        non_trainable = [v.value for v in head.non_trainable_variables]

        def chosen(maps):
            scores, _ = head.stateless_call(trainable, non_trainable, maps, training=False)
            return jnp.take_along_axis(scores, jnp.asarray(class_indices)[:, None], axis=1).sum()

        return np.asarray(jax.grad(chosen)(jnp.asarray(feature_maps)))
    raise UserError(f"Grad-CAM supports the tensorflow and jax Keras backends, not {backend}")
