"""A function, its compute asset and its assets as the API shows them."""

from __future__ import annotations

import base64

from bus import subjects
from schemas.bundles import BundleFile
from schemas.functions import (
    Asset,
    AssetMeta,
    AsyncConfig,
    ComputeAssetView,
    FunctionAccess,
    FunctionLimits,
    FunctionRecord,
    FunctionView,
    Revision,
)


def asset_meta(asset: Asset, file: BundleFile) -> AssetMeta:
    return AssetMeta(
        asset_name=asset.asset_name,
        asset_type=asset.asset_type,
        link=asset.link,
        size=len(file.data),
    )


def asset_of(meta: AssetMeta, data: bytes) -> Asset:
    return Asset(
        asset_name=meta.asset_name,
        asset_value=base64.b64encode(data).decode(),
        asset_type=meta.asset_type,
        link=meta.link,
    )


def compute_asset_view(
    ct: str, ft: str, revision: Revision, assets: list[Asset] | None = None
) -> ComputeAssetView:
    """The compute asset as shown; ``assets`` (with ``env_vars``) only when asked for."""
    view = ComputeAssetView(
        collection_topic=ct,
        service=ft,
        runtime=revision.runtime,
        handler=revision.handler,
        timeout=revision.timeout,
        read_only_fs=revision.read_only_fs,
    )
    if revision.network:
        view.network = True
    if assets is not None:
        view.env_vars = revision.env_vars
        view.assets = assets
    return view


def function_view(
    record: FunctionRecord, revision: Revision, kind: str, assets: list[Asset] | None = None
) -> FunctionView:
    ct, ft = record.collection_topic, record.service
    compute_asset = compute_asset_view(ct, ft, revision, assets)
    view = FunctionView(
        description=record.description,
        name=record.name,
        runtime=revision.runtime,
        subject=subjects.function_subject(ct, ft),
        type=kind,
        modified=record.modified,
        compute_asset=compute_asset,
        monitor_config=record.monitor_config,
        schema=revision.schema,
    )
    if assets is not None or record.async_config != AsyncConfig():
        view.async_config = record.async_config
    if assets is not None or record.limits != FunctionLimits():
        view.limits = record.limits
    if assets is not None or record.access != FunctionAccess():
        view.access = record.access
    if assets is not None:
        view.size = revision.size
        view.revision = revision.number
        view.aliases = record.aliases
        view.created = record.created
    return view
