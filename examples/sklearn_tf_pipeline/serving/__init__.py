"""Files shipped inside the model artifacts' ``code/`` directory (copied there by ``train.py``)."""
