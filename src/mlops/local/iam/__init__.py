"""Local IAM enforcement: AWS's policy evaluation applied to the local control plane."""
