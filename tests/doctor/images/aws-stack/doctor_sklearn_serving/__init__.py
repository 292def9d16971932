"""A scikit-learn serving package on AWS's stack, in the style of AWS's scikit-learn container."""
