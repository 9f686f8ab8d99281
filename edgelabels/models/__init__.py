"""Backbone registry, classifier head, U-Net. Backend-agnostic Keras; nothing here imports TensorFlow."""
