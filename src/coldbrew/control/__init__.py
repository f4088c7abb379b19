"""The control plane: the autoscaling policy, and the scheduler that acts on it."""
