"""pytest plugin: the module name ``aiopg.cursor`` as sprockets-postgres knew it.

The sprockets-postgres 1.8.1 test suite patches ``aiopg.cursor.Cursor`` and
``aiopg.connection.Connection``.  aiopg 1.3 moved ``Cursor`` into
``aiopg.connection`` and removed ``aiopg.cursor``, and aiopg 1.2 and older
do not run on current Pythons.  Loaded with ``-p renamed_aiopg_cursor``,
this makes ``aiopg.cursor`` another name for ``aiopg.connection``: the same
module object, so a patch of ``aiopg.cursor.Cursor.execute`` lands on the
class aiopg really uses.  Nothing in the suite's files is changed.
"""

from __future__ import annotations

import sys

import aiopg
import aiopg.connection

if "aiopg.cursor" not in sys.modules:
    sys.modules["aiopg.cursor"] = aiopg.connection
    aiopg.cursor = aiopg.connection  # type: ignore[attr-defined]
