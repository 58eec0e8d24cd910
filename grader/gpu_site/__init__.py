"""The folder the grader puts first on a sandbox's PYTHONPATH: its sitecustomize.py caps GPU memory, reports what the job saw."""
