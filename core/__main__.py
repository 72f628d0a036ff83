"""``python -m core …`` and the ``alliance`` command (pyproject.toml's console script): the same
entry point, :func:`run`."""
import os
import sys


def run() -> int:
    """Set one BLAS thread, then run the command line (:func:`core.cli.main`).

    The fits are many small matrix operations: one BLAS thread is faster than a pool of spinning
    threads (bench/README.md: 4.4 s -> 3.3 s for the 5,350-patient ladder). Set before numpy loads,
    which is why the command line is imported here and not at the top of the module."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from core.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
