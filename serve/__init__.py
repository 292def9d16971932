"""The container server: SageMaker single-model, multi-model and multi-container contracts."""
