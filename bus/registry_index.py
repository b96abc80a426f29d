"""What listings and the bundle budget read instead of scanning the whole registry: every
function record by collection (kept sorted as the listing shows them) and the bundles each
collection's revisions use, fed in stream order by a registry view's watch.

The index is only as new as the last entry it was given (``applied``); the registry reads it
once that has reached the stream's last sequence, so a listing still sees every write made
before it began, here or in another process. No I/O here.
"""

from __future__ import annotations

import asyncio

from schemas.functions import FunctionRecord, Revision


class RegistryIndex:
    """Function records and per-collection bundle use, as of stream sequence ``applied``."""

    def __init__(self) -> None:
        self.live = False  # a watch feeds it (set once its first sync is done)
        self.applied = 0
        self._progress = asyncio.Event()
        self._functions: dict[str, dict[str, FunctionRecord]] = {}  # ct -> ft -> record
        self._sorted: dict[str, list[FunctionRecord]] = {}  # ct -> listing order, when built
        self._bundles: dict[str, dict[str, list[int]]] = {}  # ct -> digest -> [size, revisions]
        self._revision_bundle: dict[tuple[str, str, int], str] = {}

    def saw(self, seq: int) -> None:
        """Every entry of the watch, whatever it held, once it has been applied."""
        if seq > self.applied:
            self.applied = seq
            self._progress.set()

    async def reached(self, seq: int, wait_s: float) -> bool:
        """Whether it has applied everything up to ``seq`` (waiting at most ``wait_s``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while self.applied < seq:
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), left)
            except TimeoutError:
                return self.applied >= seq
        return True

    def put_function(self, ct: str, ft: str, record: FunctionRecord) -> None:
        self._functions.setdefault(ct, {})[ft] = record
        self._sorted.pop(ct, None)

    def drop_function(self, ct: str, ft: str) -> None:
        if self._functions.get(ct, {}).pop(ft, None) is not None:
            self._sorted.pop(ct, None)
            if not self._functions[ct]:
                del self._functions[ct]

    def functions(self, ct: str | None = None) -> list[FunctionRecord]:
        """As ``Registry.list_functions`` orders them: by collection, created, service id."""
        found: list[FunctionRecord] = []
        for collection in [ct] if ct is not None else sorted(self._functions):
            found.extend(self._sorted_of(collection))
        return found

    def _sorted_of(self, ct: str) -> list[FunctionRecord]:
        listing = self._sorted.get(ct)
        if listing is None:
            records = self._functions.get(ct, {}).values()
            listing = sorted(records, key=lambda r: (r.created, r.service))
            self._sorted[ct] = listing
        return listing

    def put_revision(self, ct: str, ft: str, revision: Revision) -> None:
        key = (ct, ft, revision.number)
        self.drop_revision(*key)  # a number used again after a purge
        size = sum(asset.size for asset in revision.assets)
        held = self._bundles.setdefault(ct, {}).setdefault(revision.bundle, [size, 0])
        held[1] += 1
        self._revision_bundle[key] = revision.bundle

    def drop_revision(self, ct: str, ft: str, number: int) -> None:
        digest = self._revision_bundle.pop((ct, ft, number), None)
        if digest is None:
            return
        held = self._bundles[ct]
        held[digest][1] -= 1
        if not held[digest][1]:
            del held[digest]
            if not held:
                del self._bundles[ct]

    def collection_bundles(self, ct: str) -> dict[str, int]:
        """The bundles the collection's revisions use, each with its decoded size."""
        return {digest: size for digest, (size, _) in self._bundles.get(ct, {}).items()}
