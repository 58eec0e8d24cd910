"""Patches a module right after it first runs: the meta path finder sitecustomize and grader_fallbacks share.

Imported only inside the grader's sandbox (grader/gpu_site is on its PYTHONPATH). It imports no
framework: the watched module loads as usual through the path finder, and its patch runs once its
code has run, before anything can bind its names. A patch that raises leaves the module as it was
and is handed to ``on_error``; nothing here may fail the student's program.
"""

import importlib.machinery


class PatchOnImport:
    """A meta path finder: ``watched`` maps a module name to the patch applied to it once it has run."""

    def __init__(self, watched, on_error):
        self.watched = watched
        self.on_error = on_error

    def find_spec(self, name, path=None, target=None):
        patch = self.watched.get(name)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            try:
                patch(module)
            except Exception as exc:  # noqa: BLE001 - the module stays as it was; on_error records why
                self.on_error(name, exc)

        try:
            spec.loader.exec_module = exec_module  # this module's own loader instance only
        except (AttributeError, TypeError):
            pass
        return spec
