"""The instructor's grader for the CNN hyperparameter-tuning assignment.

The grader's own process never imports keras, torch or tensorflow: training and
model evaluation run in sandboxed child processes.
"""

__version__ = "0.1.0"
