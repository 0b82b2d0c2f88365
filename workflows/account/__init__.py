"""The account workflow: one long-running workflow per account (`workflow`), the messages it
takes and gives (`messages`), and what operators see of it in the Web UI (`visibility`).

Callers import from here; the modules say where each part is defined.
"""

from core.workflow_ids import WORKFLOW_ID_PREFIX, workflow_id_for
from workflows.account.messages import (
    AccountState,
    AccountWorkflowInput,
    CancelRequest,
    KeepPlanRequest,
    OperatorResult,
    PlanChangeResult,
    ResumeRequest,
    StripeEventSignal,
    UnsentEmail,
    UpdatedAccount,
)
from workflows.account.visibility import (
    ACCOUNT_ID,
    BILLING_PLAN,
    BILLING_STATE,
    BILLING_SYNC_ERROR,
    GRACE_ENDS_AT,
    SEARCH_ATTRIBUTES,
    STRIPE_CUSTOMER_ID,
)
from workflows.account.workflow import AccountBillingWorkflow

__all__ = [
    "ACCOUNT_ID",
    "BILLING_PLAN",
    "BILLING_STATE",
    "BILLING_SYNC_ERROR",
    "GRACE_ENDS_AT",
    "SEARCH_ATTRIBUTES",
    "STRIPE_CUSTOMER_ID",
    "WORKFLOW_ID_PREFIX",
    "AccountBillingWorkflow",
    "AccountState",
    "AccountWorkflowInput",
    "CancelRequest",
    "KeepPlanRequest",
    "OperatorResult",
    "PlanChangeResult",
    "ResumeRequest",
    "StripeEventSignal",
    "UnsentEmail",
    "UpdatedAccount",
    "workflow_id_for",
]
