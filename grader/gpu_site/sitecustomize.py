"""Run by the grader in every sandboxed Python: caps a framework's GPU memory to the slot's share, reports what it saw.

The grader puts this folder first on the sandbox's PYTHONPATH, so Python's ``site`` imports this
file at start-up. It imports no framework itself: an import hook waits for the job to import
torch or tensorflow and then applies the share the grader set (GRADER_GPU_MEMORY_FRACTION,
GRADER_GPU_MEMORY_MIB). At exit, a process that imported torch, tensorflow or jax writes one small
JSON report, ``$GRADER_DEVICE_REPORT_DIR/<pid>.json``: the frameworks, whether CUDA was available,
the device's name and memory, and whether the job put memory on it. It also installs
grader_fallbacks (beside it: keras.datasets' loaders answered from the grader's train split,
KerasTuner checkpoints saved whole). Nothing here may ever fail the student's program: every step
is guarded, and a problem is only recorded in the report.
"""

import atexit
import json
import os
import sys

_problems = []


def _share():
    try:
        fraction = float(os.environ.get("GRADER_GPU_MEMORY_FRACTION") or 1)
        mib = int(os.environ.get("GRADER_GPU_MEMORY_MIB") or 0)
    except ValueError:
        return 1.0, 0
    return (fraction if 0 < fraction <= 1 else 1.0), max(mib, 0)


def _cap_torch(torch):
    fraction, _ = _share()
    if fraction >= 1:
        return

    def apply():
        try:  # runs inside torch's CUDA initialisation: an error here must not become the student's
            torch.cuda.set_per_process_memory_fraction(fraction, 0)
        except Exception as exc:  # noqa: BLE001
            _problems.append(f"torch memory cap not applied: {type(exc).__name__}: {exc}"[:300])

    lazy = getattr(torch.cuda, "_lazy_call", None)
    if lazy is not None:  # applied when CUDA initialises, so importing torch never starts CUDA
        lazy(apply)
    elif torch.cuda.is_available():
        apply()


def _cap_tensorflow(tf):
    fraction, mib = _share()
    if fraction >= 1 or not mib:
        return
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        tf.config.set_logical_device_configuration(gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=mib)])


def _not_capped(name, exc):
    """A cap that raised: the student's program goes on, and the report says why."""
    _problems.append(f"{name} memory cap not applied: {type(exc).__name__}: {exc}"[:300])


def _framework_report():
    report = {"version": 1, "pid": os.getpid(), "frameworks": {}, "cuda_available": False, "cuda_used": False,
              "device_name": None, "memory_mib": None}
    torch = sys.modules.get("torch")
    tf = sys.modules.get("tensorflow")
    jax = sys.modules.get("jax")
    if torch is not None and hasattr(torch, "cuda"):
        report["frameworks"]["torch"] = str(getattr(torch, "__version__", "?"))
        try:
            if torch.cuda.is_available():
                report["cuda_available"] = True
                props = torch.cuda.get_device_properties(0)
                report["device_name"] = props.name
                report["memory_mib"] = int(props.total_memory) // 2**20
                report["cuda_used"] = torch.cuda.max_memory_allocated(0) > 0
        except Exception as exc:  # noqa: BLE001
            _problems.append(f"torch: {type(exc).__name__}: {exc}"[:300])
    if tf is not None and hasattr(tf, "config"):
        report["frameworks"]["tensorflow"] = str(getattr(tf, "__version__", "?"))
        try:
            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                report["cuda_available"] = True
                details = tf.config.experimental.get_device_details(gpus[0])
                report["device_name"] = report["device_name"] or details.get("device_name")
                try:
                    used = tf.config.experimental.get_memory_info("GPU:0").get("peak", 0) > 0
                except Exception:  # noqa: BLE001 - the GPU was never initialised
                    used = False
                report["cuda_used"] = report["cuda_used"] or used
        except Exception as exc:  # noqa: BLE001
            _problems.append(f"tensorflow: {type(exc).__name__}: {exc}"[:300])
    if jax is not None and hasattr(jax, "devices"):
        report["frameworks"]["jax"] = str(getattr(jax, "__version__", "?"))
        try:
            gpus = [d for d in jax.devices() if d.platform in ("gpu", "cuda")]
            if gpus:
                report["cuda_available"] = True
                report["device_name"] = report["device_name"] or gpus[0].device_kind
                stats = gpus[0].memory_stats() or {}
                report["cuda_used"] = report["cuda_used"] or stats.get("peak_bytes_in_use", 0) > 0
        except Exception as exc:  # noqa: BLE001
            _problems.append(f"jax: {type(exc).__name__}: {exc}"[:300])
    return report


def _write_report():
    folder = os.environ.get("GRADER_DEVICE_REPORT_DIR")
    if not folder or not any(name in sys.modules for name in ("torch", "tensorflow", "jax")):
        return
    try:
        report = _framework_report()
        if _problems:
            report["problem"] = "; ".join(_problems)[:600]
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{os.getpid()}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            json.dump(report, fh)
        os.replace(path + ".tmp", path)
    except Exception:  # noqa: BLE001 - never fail the program at exit
        pass


def _install():
    try:
        if os.environ.get("GRADER_GPU_MEMORY_FRACTION"):
            from grader_patch import PatchOnImport

            sys.meta_path.insert(0, PatchOnImport({"torch": _cap_torch, "tensorflow": _cap_tensorflow}, _not_capped))
        atexit.register(_write_report)
    except Exception:  # noqa: BLE001
        pass
    try:  # Keras' dataset loaders and KerasTuner's checkpoints, patched when the job imports them
        import grader_fallbacks

        grader_fallbacks.install()
    except Exception:  # noqa: BLE001
        pass


_install()
