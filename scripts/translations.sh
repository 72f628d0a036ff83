#!/usr/bin/env bash
# Extract every _("…") / N_("…") / ngettext(…) string into core/locale/messages.pot and merge it into
# each language's catalogue (core/locale/<lang>/LC_MESSAGES/messages.po). Then translate the new
# entries (empty msgstr) in the .po files; tests/test_i18n.py fails while any is left empty.
set -euo pipefail
cd "$(dirname "$0")/.."
PYBABEL=.venv/bin/pybabel
"$PYBABEL" extract -F babel.cfg -k _ -k N_ -k ngettext:1,2 --no-location --sort-output \
  --project "alliance-dashboard" --copyright-holder "the alliance dashboard authors" \
  -o core/locale/messages.pot . >/dev/null 2>&1
for po in core/locale/*/LC_MESSAGES/messages.po; do
  lang=$(basename "$(dirname "$(dirname "$po")")")
  "$PYBABEL" update -i core/locale/messages.pot -d core/locale -l "$lang" --no-fuzzy-matching --ignore-obsolete >/dev/null 2>&1
done
echo "Catalogues updated: $(ls core/locale/*/LC_MESSAGES/messages.po | tr '\n' ' ')"
