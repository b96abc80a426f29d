"""What the API needs to answer nats-server's auth callout, kept where only the roles read it.

The embedded server's data dir holds the issuer's seed (an account nkey whose public key the
server's config names) and the system user's password; on every start they are put in the
internal bucket, from which any API process on the bus takes them. A bus without them (one the
operator runs, configured otherwise) has no callout, and an API on it answers none.
"""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext

from bus import subjects
from bus.kv import open_bucket
from schemas.base import StoredStruct
from schemas.codec import decoder_for, encode

AUTH_SUBJECT = "$SYS.REQ.USER.AUTH"  # where nats-server asks
AUTH_QUEUE = "computebus-auth"
_KEY = "nats-callout"


class CalloutKeys(StoredStruct):
    issuer_seed: str  # the account nkey seed that signs the answers
    system_password: str  # of the ``system`` user: to disconnect a revoked token's connections


async def store_callout_keys(js: JetStreamContext, keys: CalloutKeys) -> None:
    kv = await open_bucket(js, subjects.INTERNAL_BUCKET)
    await kv.put(_KEY, encode(keys))


async def load_callout_keys(js: JetStreamContext) -> CalloutKeys | None:
    kv = await open_bucket(js, subjects.INTERNAL_BUCKET)
    try:
        entry = await kv.get(_KEY)
    except nats.js.errors.KeyNotFoundError:
        return None
    return decoder_for(CalloutKeys).decode(entry.value or b"")
