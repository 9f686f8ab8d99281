"""Test helpers, imported one way: `from helpers.runs import make_run` (pytest puts tests/ on sys.path).

runs.py          run directories and exports of tiny real models, written through edgelabels.artifacts
server.py        hand-built ONNX export folders (classifier, U-Net), `edgelabels serve` in a subprocess, boto3 clients
lungs.py         synthetic chest films and lung masks
datasets.py      stripes datasets and the seconds-long training config
segmentation.py  U-Nets with hand-countable Dice (a 1x1 convolution), their runs and exports
benchmark.py     test folders and recorded Rekognition answers for the benchmark tests
detection.py     a hand-built detector export (ONNX made with onnx.helper, no training) for the edge tests
multilabel.py    a hand-built multi-label export whose colour channels decide its labels (no training)
fake_trial.py    a tune trial without TensorFlow, its training replaced by a plan (run as a script by the tune tests)
marks.py         which fixtures train or export a model (read from their code): conftest marks their tests slow
jax_worker.py    the suite's JAX-backend jobs, run in one child process per fake-device count
"""
