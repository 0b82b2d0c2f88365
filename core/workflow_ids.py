"""The account workflow's id, derived from the account id: the webhook gateway, the API, the
workflows and the logs (which read the account back out of it) share one definition."""

WORKFLOW_ID_PREFIX = "billing-account-"


def workflow_id_for(account_id: str) -> str:
    return f"{WORKFLOW_ID_PREFIX}{account_id}"
