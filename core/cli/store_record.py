"""``python -m core store record``: one session's scores into the clinic database, as the *Record a
session* page stores them (:meth:`core.store.ClinicStore.record_session`).

``store record --dataset NAME --user NAME --patient ID --session N [--date YYYY-MM-DD]
--set MEASURE=VALUE ... [--correct REASON] [--therapist CODE] [--new-patient]``, with the password of
``--user`` from ``ALLIANCE_PASSWORD``. A session already stored is changed only with ``--correct
REASON`` (a correction: the earlier values stay in the history). Exit 0 with a one-line JSON summary;
exit 2 with one sentence on any refusal: a value out of range, not her patient, no such measure, the
session already recorded without ``--correct``, a wrong password or role.
"""
from __future__ import annotations

import functools

from core.errors import InputError
from core.i18n import _


def add_parser(actions, *, open_store, sign_in, summary) -> None:
    """Register ``store record`` with the ``store`` subcommands (called by :mod:`core.cli.store`, which
    hands over its own helpers: opening the database, signing in with ``ALLIANCE_PASSWORD``, the
    one-line JSON summary)."""
    rec = actions.add_parser("record", help=_("record one session's scores (therapists and supervisors)"))
    rec.add_argument("--dataset", required=True, help=_("the data set to record the session in"))
    rec.add_argument("--user", required=True, help=_("a therapist or supervisor (password from ALLIANCE_PASSWORD)"))
    rec.add_argument("--patient", required=True, help=_("the patient's code"))
    rec.add_argument("--session", required=True, help=_("the session number"))
    rec.add_argument("--date", help=_("the session's date, YYYY-MM-DD (default: today)"))
    rec.add_argument("--set", action="append", default=[], metavar="MEASURE=VALUE", dest="values",
                     help=_("a score, e.g. alliance=5.5 or symptoms=71; repeat for each measure "
                            "(in a correction, MEASURE= clears it)"))
    rec.add_argument("--correct", metavar="REASON",
                     help=_("change a session already recorded, giving the reason (kept in the history)"))
    rec.add_argument("--therapist", help=_("a supervisor: the therapist code of a new patient"))
    rec.add_argument("--new-patient", action="store_true",
                     help=_("the patient is new: refuse if the code is already in the data set"))
    rec.set_defaults(func=functools.partial(run, open_store=open_store, sign_in=sign_in, summary=summary), out=None)


def _values(pairs: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = str(pair).partition("=")
        if not sep or not name.strip():
            raise InputError(_("--set {pair} is not MEASURE=VALUE; write it like --set alliance=5.5.").format(pair=pair))
        if name.strip() in values:
            raise InputError(_("--set gives {measure} twice; give each measure once.").format(measure=name.strip()))
        values[name.strip()] = value.strip()
    if not values:
        raise InputError(_("Give at least one score with --set MEASURE=VALUE (e.g. --set symptoms=71)."))
    return values


def run(args, *, open_store, sign_in, summary) -> None:
    import datetime

    from core.store import AccessDenied, NoSuchDataset, NoSuchPatient, StoreBusy
    from core.store.record import VIA_CLI, RecordConflict

    values = _values(args.values)
    store = open_store(create=False)
    try:
        user = sign_in(store, args.user)
        day = args.date or datetime.date.today().isoformat()
        try:
            expected = None
            if args.correct:
                stored = store.stored_session(user, args.dataset, args.patient, args.session)
                expected = stored.revision if stored is not None else None
            result = store.record_session(user, args.dataset, args.patient, args.session, values, session_date=day,
                                          reason=args.correct, expected=expected, therapist=args.therapist,
                                          new_patient=args.new_patient, via=VIA_CLI)
        except (AccessDenied, NoSuchDataset, NoSuchPatient, StoreBusy, RecordConflict) as err:
            raise InputError(str(err)) from None
        summary({"dataset": result.dataset, "patient": result.patient, "session": result.session,
                  "date": day, "action": result.action, "values": result.values, "therapist": result.therapist,
                  "version": result.version})
    finally:
        store.close()
