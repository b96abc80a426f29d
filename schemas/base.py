"""The base of every wire type.

One place states the options so every body, record and event behaves alike:
``forbid_unknown_fields`` turns a misspelt field into a 400 that names it instead of a silently
ignored setting, and ``kw_only`` lets optional fields sit anywhere. Defaults are *not* omitted on
encode: the Quiva response shape prints ``read_only_fs: true`` even though it is the default.
Fields that may be absent use ``msgspec.UNSET`` and vanish from the encoded output.
"""

from __future__ import annotations

import msgspec


class Struct(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class StoredStruct(Struct, forbid_unknown_fields=False):
    """What computebus stores and reads back (registry and monitor records, dead letters), as
    opposed to what a caller sends: during a rolling upgrade a newer version may have written
    fields this one does not know, and such a record must still be read."""
