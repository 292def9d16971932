"""scikit-learn preprocessing -> TensorFlow model: a SageMaker serial inference pipeline, end to end.

``train.py`` makes the artifacts, ``deploy.py`` deploys them with plain boto3 (AWS or the local
harness), ``demo.py`` is ``./build.sh demo``. ``serving/`` holds what ships in the artifacts' ``code/``.
"""
