"""``python -m core power``: simulation-based power for one fixed effect, as R's simr computes it.

Runs on this machine's cores by default, or on a Dask cluster with ``--scheduler ADDRESS``.
Progress (simulations done and time left) goes to standard error; ``--quiet`` silences it.
"""
from __future__ import annotations

import sys
import time

from core.cli.common import add_role_flags, validated_from_args
from core.errors import InputError
from core.i18n import _


def add_parser(sub) -> None:
    parser = sub.add_parser("power", help=_("simulation-based power for one fixed effect (simr's method)"))
    add_role_flags(parser)
    parser.add_argument("--formula", required=True,
                        help=_('the model in lme4 notation, e.g. "symptoms ~ alliance_between + alliance_within + '
                               '(1 | patient)"'))
    parser.add_argument("--term", required=True, help=_("the fixed effect tested, e.g. alliance_within"))
    parser.add_argument("--effect", type=float,
                        help=_("its value in the simulations (default: the estimate, i.e. observed power; "
                               "prefer the smallest effect of interest)"))
    parser.add_argument("--patients", help=_("numbers of patients, e.g. 48,96,192 (default: half, observed, double)"))
    parser.add_argument("--nsim", type=int, default=1000, help=_("simulations per number of patients (1000)"))
    parser.add_argument("--seed", type=int, default=1,
                        help=_("seed; the same seed gives the same result anywhere (1)"))
    parser.add_argument("--alpha", type=float, default=0.05, help=_("significance level (0.05)"))
    parser.add_argument("--test", choices=("kr", "satterthwaite"), default="kr",
                        help=_("the test of each simulated fit: kr, Kenward–Roger (pbkrtest; simr's default), or "
                               "satterthwaite (lmerTest)"))
    parser.add_argument("--scheduler", help=_("address of a Dask scheduler, e.g. tcp://10.0.0.5:8786 "
                                              "(default: this machine's cores)"))
    parser.add_argument("--workers", type=int, help=_("processes on this machine (default: every core)"))
    parser.add_argument("--quiet", action="store_true", help=_("no progress on standard error"))
    parser.set_defaults(func=run)


def parse_patients(text: str | None) -> list[int] | None:
    """``"48,96,192"`` → ``[48, 96, 192]``."""
    if text is None:
        return None
    try:
        values = [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise InputError(_("--patients '{text}' is not a list of whole numbers such as 48,96,192.").format(
            text=text)) from None
    if not values:
        raise InputError(_("--patients needs at least one number of patients, such as 48,96,192."))
    return values


class _Printer:
    """Progress on standard error: a line at most every 2 s (rewritten in place on a terminal)."""

    def __init__(self) -> None:
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int, seconds_left: float | None) -> None:
        from core.stats.power_run import progress_text

        now = time.monotonic()
        if done not in (0, total) and now - self.last < 2.0:
            return
        self.last = now
        text = _("power: {progress}").format(progress=progress_text(done, total, seconds_left))
        if self.tty:
            sys.stderr.write("\r" + text.ljust(70) + ("\n" if done == total else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def run(args) -> dict:
    from core.reporting.json_report import clean, excluded_rows
    from core.stats.power import power_analysis
    from core.stats.power_run import DaskRunner, LocalRunner

    if args.nsim < 1:
        raise InputError(_("--nsim must be at least 1."))
    if args.workers is not None and args.workers < 1:
        raise InputError(_("--workers must be at least 1."))
    patients = parse_patients(args.patients)
    validated = validated_from_args(args)
    runner = DaskRunner(args.scheduler) if args.scheduler else LocalRunner(args.workers)
    result = power_analysis(validated.data, args.formula, args.term, effect=args.effect, patients=patients,
                            nsim=args.nsim, seed=args.seed, alpha=args.alpha, runner=runner,
                            progress=None if args.quiet else _Printer(), role_headers=validated.mapping.used(),
                            cell_reasons=validated.cell_reasons, test=args.test)
    report = result.report()
    report["excluded_rows"] = excluded_rows(result.excluded, validated)  # the file's and the model's
    return clean(report)
