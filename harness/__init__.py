"""A local SageMaker: control plane and runtime for boto3, running real containers."""
