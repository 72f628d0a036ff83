"""``python -m core store``: the clinic database from the command line (what a clinic's IT runs).

``store init | add-user | import | export | audit`` on the database the dashboard uses
(``ALLIANCE_DATABASE_URL``, else ``$ALLIANCE_DATA_DIR/clinic.db``). Passwords come from the
environment, never from flags: ``ALLIANCE_PASSWORD`` (the user named by ``--user``) and
``ALLIANCE_NEW_PASSWORD`` (a user being added). Every refusal exits 2 with one plain sentence.
A one-line JSON summary goes to standard output (``import``: also to ``--out`` when given).

Typical use: ``store init`` once, ``store add-user boss --role supervisor`` for the first
supervisor (no ``--user`` while the database has no user), then from cron
``store import nightly.csv --dataset Clinic --user boss --patient ... --session ... --symptoms ...``.

Backup and restore (:mod:`core.store.backup`): ``store export --format backup --user boss --out
clinic.backup`` (``--dataset NAME`` for one data set), ``store import --restore clinic.backup``.
``store export`` without ``--format`` (``--format csv``) writes a CSV for spreadsheets, not a backup.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import core.cli.store_fhir as store_fhir  # issue 29: --format fhir
from core.cli.common import add_role_flags
from core.errors import InputError
from core.i18n import _

ROLES = ("supervisor", "therapist", "researcher")
#: ``store import`` needs these for a file, and takes none of them with ``--restore``.
_NOT_FOR_RESTORE = {"data": "DATA", "patient": "--patient", "session": "--session", "symptoms": "--symptoms",
                    "dataset": "--dataset", "user": "--user"}


def add_parser(sub) -> None:
    parser = sub.add_parser("store", help=_("the clinic database: init, add-user, import, export, audit"))
    actions = parser.add_subparsers(dest="store_command", required=True)

    init = actions.add_parser("init", help=_("create or upgrade the clinic database (never with demo accounts)"))
    init.set_defaults(func=run, out=None)

    add = actions.add_parser("add-user", help=_("add a user (password from ALLIANCE_NEW_PASSWORD)"))
    add.add_argument("name", help=_("user name (or e-mail for single sign-on)"))
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--therapist-code", help=_("a therapist's code exactly as in the data's therapist column"))
    add.add_argument("--display-name", help=_("the name shown in the dashboard (default: the user name)"))
    add.add_argument("--email", help=_("e-mail address (for single sign-on)"))
    add.add_argument("--single-sign-on", action="store_true",
                     help=_("no local password: the user signs in only through the clinic's OpenID Connect provider"))
    add.add_argument("--user", help=_("the supervisor adding the user (password from ALLIANCE_PASSWORD); "
                                      "leave out only for the first supervisor of an empty database"))
    add.set_defaults(func=run, out=None)

    imp = actions.add_parser("import", help=_("preview and store a file in one transaction (supervisors)"))
    add_role_flags(imp)
    imp.add_argument("--dataset", required=True, help=_("the data set to create or update"))
    imp.add_argument("--user", required=True, help=_("a supervisor (password from ALLIANCE_PASSWORD)"))
    imp.add_argument("--preview", action="store_true", help=_("only show what would change; store nothing"))
    imp.add_argument("--shareable", action="append", default=None, metavar="COL",
                     help=_("a column researchers may see (numbers, or categories of at least 5 patients); "
                            "repeat for more; default: the data set's earlier choice, for a new data set none"))
    store_fhir.add_import_flags(imp)
    imp.add_argument("--restore", metavar="BACKUP",
                     help=_("restore a backup written by 'store export --format backup' (then no DATA and no "
                            "column flags) into an empty database, or a data set into the database it came from"))
    for action in imp._actions:  # with --restore these are not needed: checked in _import
        if action.dest in _NOT_FOR_RESTORE:
            action.required = False
            if not action.option_strings:
                action.nargs = "?"
    imp.set_defaults(func=run)

    exp = actions.add_parser("export", help=_("a data set as that user may see it, as CSV; or a backup"))
    exp.add_argument("--dataset", help=_("the data set to export (for --format backup: leave out for the whole "
                                         "database)"))
    exp.add_argument("--user", required=True, help=_("password from ALLIANCE_PASSWORD"))
    exp.add_argument("--out", required=True, help=_("the file to write"))
    store_fhir.add_export_flags(exp)
    exp.set_defaults(func=run)

    aud = actions.add_parser("audit", help=_("the audit log as CSV (supervisors)"))
    aud.add_argument("--user", required=True, help=_("a supervisor (password from ALLIANCE_PASSWORD)"))
    aud.add_argument("--out", required=True, help=_("the CSV file to write"))
    aud.add_argument("--limit", type=int, default=100_000, help=_("newest entries to write (default 100000)"))
    aud.set_defaults(func=run)

    from core.cli.store_record import add_parser as add_record  # `store record` (issue 26), given the helpers below

    add_record(actions, open_store=_open, sign_in=_sign_in, summary=_summary)


def _open(create: bool):
    from core.store import ClinicStore, StoreUnwritable, default_url

    url = default_url()
    if (not create and url.startswith("sqlite:///") and not url.startswith("sqlite:///file:")
            and not Path(url[len("sqlite:///"):]).exists()):
        raise InputError(_("There is no clinic database at {path}; run 'python -m core store init' first.").format(
            path=url[len("sqlite:///"):]))
    try:
        return ClinicStore(url)
    except (InputError, StoreUnwritable, RuntimeError) as err:  # a link, disk full or read-only, a newer schema
        raise InputError(str(err)) from None
    except Exception as err:  # noqa: BLE001 - an unreachable server, a wrong URL: one sentence, no traceback
        raise InputError(_("The clinic database could not be opened ({error}); check ALLIANCE_DATABASE_URL or "
                           "ALLIANCE_DATA_DIR.").format(error=type(err).__name__)) from None


def _sign_in(store, name: str):
    password = os.environ.get("ALLIANCE_PASSWORD")
    if not password:
        raise InputError(_("Set ALLIANCE_PASSWORD to the password of '{name}' (passwords are never given as "
                           "flags).").format(name=name))
    outcome = store.check_sign_in(name, password)
    if outcome.user is None:
        from core.store.audit import escape_text

        if outcome.wait_seconds > 0:
            raise InputError(_("Sign-in refused for '{name}': after repeated failed sign-ins with this user name, each "
                               "try must wait a little; try again in {seconds} seconds (or ask a supervisor to "
                               "unlock it).").format(name=escape_text(name, 200),
                                                     seconds=max(1, round(outcome.wait_seconds))))
        raise InputError(_("Sign-in refused for '{name}': the user name or ALLIANCE_PASSWORD is not right, or the "
                           "account is deactivated.").format(name=escape_text(name, 200)))
    return outcome.user


def _summary(result: dict, out: str | None = None) -> None:
    text = json.dumps(result, ensure_ascii=False)
    if out:
        Path(out).write_text(text + "\n", encoding="utf-8")
    sys.stdout.write(text + "\n")


def run(args) -> None:
    from core.store import AccessDenied, NoSuchDataset, StoreBusy, StoreUnwritable, UploadConflict

    try:
        _run(args)
    except (AccessDenied, NoSuchDataset, StoreBusy, StoreUnwritable, UploadConflict) as err:
        raise InputError(str(err)) from None


def _run(args) -> None:
    command = args.store_command
    store = _open(create=command == "init")
    try:
        if command == "init":
            new = store.init_clinic()
            _summary({"database": repr(store), "kind": "clinic", "new": new})
        elif command == "add-user":
            _add_user(store, args)
        elif command == "import" and store_fhir.wants_fhir(args):
            store_fhir.import_bundle(store, args, _sign_in, _summary)
        elif command == "import":
            if not args.restore:
                store_fhir.require_csv_flags(args)
            _import(store, args)
        elif command == "export" and args.format == "backup":
            _backup(store, args)
        elif command == "export" and not args.dataset:
            raise InputError(_("Give --dataset NAME: the data set to export."))
        elif command == "export" and store_fhir.wants_fhir(args):
            store_fhir.export_bundle(store, args, _sign_in, _summary)
        elif command == "export":
            user = _sign_in(store, args.user)
            data = store.load_dataset(user, args.dataset).data
            _write_csv(data, args.out)
            store.log(user, "export", f"{args.dataset} (command line, {len(data)} rows)")
            _summary({"dataset": args.dataset, "format": "csv", "rows": len(data),
                      "columns": [str(c) for c in data.columns], "out": args.out,
                      "note": _("for spreadsheets: text a spreadsheet would run as a formula (= + - @ …) starts "
                                "with ', and row is the spreadsheet row; not a backup (use --format backup)")})
        elif command == "audit":
            user = _sign_in(store, args.user)
            log = store.audit_log(user, limit=args.limit)
            _write_csv(log.assign(at=log["at"].astype(str)), args.out)
            store.log(user, "export", "audit log (command line)")
            _summary({"entries": len(log), "out": args.out})
    finally:
        store.close()


def _write_csv(frame, out: str) -> None:
    from core.reporting.exports import csv_bytes

    try:
        Path(out).write_bytes(csv_bytes(frame))
    except OSError as err:
        raise InputError(_("Could not write {out}: {error}.").format(out=out, error=err.strerror or err)) from None


def _add_user(store, args) -> None:
    from core.store import AccessDenied

    password = None if args.single_sign_on else os.environ.get("ALLIANCE_NEW_PASSWORD")
    if not args.single_sign_on and not password:
        raise InputError(_("Set ALLIANCE_NEW_PASSWORD to the new user's password (or give --single-sign-on)."))
    actor = _sign_in(store, args.user) if args.user else None
    try:
        created = store.create_user(actor, args.name, password, args.role, display_name=args.display_name,
                                    therapist_code=args.therapist_code, email=args.email)
    except AccessDenied as err:
        if actor is None:
            raise InputError(_("The database already has users: give --user NAME (a supervisor) and "
                               "ALLIANCE_PASSWORD to add more.")) from None
        raise InputError(str(err)) from None
    _summary({"user": created.username, "role": created.role.value, "therapist_code": created.therapist_code})


def _backup(store, args) -> None:
    """``store export --format backup``: the archive of a data set or of the whole database."""
    user = _sign_in(store, args.user)
    result = store.write_backup(user, args.out, dataset=args.dataset or None)
    _summary({"format": "backup", **result, "out": args.out,
              "note": _("a faithful archive (nothing neutralised; user accounts, password hashes and the pseudonym "
                        "key included: keep it as safe as the database), for 'store import --restore'; not for "
                        "spreadsheets")})


def _restore(store, args) -> None:
    """``store import --restore BACKUP``: into an empty database, or a data set into a matching one."""
    given = [flag for dest, flag in _NOT_FOR_RESTORE.items() if dest not in ("user",) and getattr(args, dest)]
    given += [f"--{d.replace('_', '-')}" for d in ("alliance", "therapist", "shareable", "sheet", "alliance_range",
                                                   "symptoms_range", "max_rows") if getattr(args, d, None)]
    if args.preview:
        given.append("--preview")
    if given:
        raise InputError(_("--restore takes the backup file alone (and --user): leave out {flags}.").format(
            flags=", ".join(given)))
    backup = Path(args.restore)
    if not backup.is_file():
        raise InputError(_("The backup {path} does not exist or is not a file.").format(path=backup))
    actor, username, password = None, None, None
    if args.user and store.is_empty_database():
        username, password = args.user, os.environ.get("ALLIANCE_PASSWORD")
        if not password:
            raise InputError(_("Set ALLIANCE_PASSWORD to the password of '{name}' (passwords are never given as "
                               "flags).").format(name=args.user))
    elif args.user:
        actor = _sign_in(store, args.user)
    result = store.restore_backup(actor, backup, username=username, password=password)
    _summary({"restored": True, "file": str(backup), **result}, args.out)


def _import(store, args) -> None:
    from core.cli.common import validated_from_args

    if args.restore:
        _restore(store, args)
        return
    missing = [flag for dest, flag in _NOT_FOR_RESTORE.items() if not getattr(args, dest)]
    if missing:
        raise InputError(_("the following arguments are required: %s") % ", ".join(missing))
    user = _sign_in(store, args.user)
    validated = validated_from_args(args)
    preview = store.preview_upload(user, args.dataset, validated, shareable=args.shareable)
    report = {"dataset": preview.dataset, "new_dataset": preview.is_new_dataset, "added": len(preview.added),
              "changed_rows": preview.changed_rows, "changed_cells": len(preview.changed),
              "unchanged": preview.unchanged, "kept": preview.kept,
              "excluded_rows": validated.excluded_records(),
              "stored": False, "version": preview.base_version}
    if not args.preview:
        result = store.apply_upload(user, preview)
        report.update(stored=True, version=result.version)
        _keep_fitted_results(store, user, preview.dataset, result.version)
    _summary(report, args.out)


def _keep_fitted_results(store, user, name: str, version: int) -> None:
    """Fit the early-warning signal's expected course of the stored data set once, with the settings the
    clinician pages start from (:func:`core.clinical.signal.dashboard_settings`), and keep it in the
    database: the first caseload after an import then reads it instead of fitting it (seconds on a
    million rows; issue 28). The overview's therapist share, early-alliance result and calibration are kept too
    (:func:`core.reporting.clinic_results.keep_clinic_results`). A data set they cannot be fitted on
    is left for the pages to say why."""
    from core.clinical.signal import dashboard_settings
    from core.errors import ModelError
    from core.reporting.clinic_results import calibration_name, calibration_result, keep_clinic_results

    dataset = store.load_dataset(user, name)
    measures = dataset.validated.measures
    try:
        keep_clinic_results(store, user, name, version, dataset.data, measures)
    except (ModelError, InputError, ValueError):
        pass
    if "symptoms" not in measures:
        return
    settings = dashboard_settings(dataset.data, dataset.instrument_for("symptoms"))
    try:
        model = store.clinic_signal_model(user, name, settings=settings)
        if model.local:  # the overview's calibration of this course, as a supervisor sees it
            store.kept_result(user, name, version, calibration_name(settings),
                              lambda: calibration_result(dataset.data, model, settings))
    except (ModelError, InputError, ValueError):
        pass
