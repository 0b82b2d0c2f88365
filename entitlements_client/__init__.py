"""The Dataface app's entitlements client: a local cache kept current by the change feed."""

from entitlements_client.client import Entitlements, EntitlementsClient, EntitlementsUnavailable

__all__ = ["Entitlements", "EntitlementsClient", "EntitlementsUnavailable"]
