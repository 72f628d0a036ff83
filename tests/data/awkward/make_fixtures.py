"""Write the committed awkward fixtures from the first 24 rows of ``../paperlike_public.csv``.

- ``clinica_ba_latin1.csv``: as a Buenos Aires clinic's Excel exports it: ``;``-separated,
  decimal comma, Windows-1252 / Latin-1, Spanish accented headers (Paciente, Terapeuta, Sesión,
  Alianza, Síntomas), CRLF line ends.
- ``clinica_ba.xlsx``: the same rows with the same Spanish headers on the second sheet
  ("Datos"; the first sheet, "Notas", holds a note), numbers stored as numbers, IDs as text.

Both must read, map and validate to exactly the same table as those 24 rows of the clean CSV
(``tests/test_reading.py``). Run from anywhere: ``python tests/data/awkward/make_fixtures.py``.
"""
from pathlib import Path

import openpyxl
import pandas as pd

HERE = Path(__file__).resolve().parent
SPANISH = {"patient": "Paciente", "therapist": "Terapeuta", "session": "Sesión",
           "alliance": "Alianza", "symptoms": "Síntomas"}
N_ROWS = 24


def clean_rows() -> pd.DataFrame:
    return pd.read_csv(HERE.parent / "paperlike_public.csv", dtype=str, keep_default_na=False).head(N_ROWS)


def main() -> None:
    rows = clean_rows()
    es = rows.rename(columns=SPANISH)
    for col in ("Alianza", "Síntomas"):
        es[col] = es[col].str.replace(".", ",", regex=False)
    (HERE / "clinica_ba_latin1.csv").write_bytes(
        es.to_csv(sep=";", index=False, lineterminator="\r\n").encode("cp1252"))

    wb = openpyxl.Workbook()
    notes = wb.active
    notes.title = "Notas"
    notes.append(["Exportado del sistema de la clínica"])
    data = wb.create_sheet("Datos")
    data.append(list(SPANISH.values()))
    for r in rows.itertuples(index=False):
        data.append([r.patient, r.therapist, int(r.session), float(r.alliance), float(r.symptoms)])
    wb.save(HERE / "clinica_ba.xlsx")


if __name__ == "__main__":
    main()
