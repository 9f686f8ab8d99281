"""edgelabels: a do-it-yourself alternative to Amazon Rekognition Custom Labels."""

__version__ = "0.1.0"
