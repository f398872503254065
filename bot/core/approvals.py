"""Approvals: a mutating runbook asked for in an incident's thread, waiting for a second person.

A request names the runbook, one host of the incident's service and the runbook's parameters; it is
``pending`` until an authorised person other than the asker approves it (→ ``running``, then ``done`` or
``failed``), someone denies it (``denied``) or its time runs out (``expired``). Each change is a
conditional transition in the store (:meth:`bot.core.store.Store.transition_approval`): of two clicks,
two replicas or a click racing the expiry, exactly one wins.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.core.blocks import Actions, Block, Button, Context, Section


class ApprovalState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DENIED = "denied"
    EXPIRED = "expired"


#: The ids the bot hands out: 10 lowercase hex digits (in button values and ``approve``/``deny`` commands).
APPROVAL_ID = re.compile(r"[0-9a-f]{10}")


class Approval(BaseModel):
    """One request to run a mutating runbook. ``asker``/``decider`` are ``platform:user`` ids (what the
    permission checks compare), ``asked_by``/``decided_by`` the labels the thread shows."""

    model_config = ConfigDict(frozen=True)

    id: str
    incident_id: str
    runbook: str
    host: str
    params: dict[str, str]
    asked_by: str
    asker: str
    #: Where it was asked (a Slack channel, a Telegram chat): roles are checked in this scope.
    channel: str
    state: ApprovalState = ApprovalState.PENDING
    created_at: datetime
    expires_at: datetime
    decided_by: str | None = None
    decider: str | None = None
    decided_at: datetime | None = None
    #: What running it found (one line), once it ran.
    outcome: str | None = None

    @property
    def what(self) -> str:
        """``restart_unit on app-1 (unit=gunicorn)``: the action, as the thread names it."""
        shown = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.runbook} on {self.host}" + (f" ({shown})" if shown else "")


#: The request card's buttons (their value is the request id).
APPROVE, DENY = "approve", "deny"


def approval_blocks(payload: dict[str, Any]) -> list[Block]:
    """The thread post of a request (``payload["approval"]``, an :class:`Approval` as JSON): who asks for
    what and until when, with Approve and Deny buttons while it is pending."""
    try:
        approval = Approval.model_validate(payload["approval"])
    except (KeyError, ValidationError):
        return [Context("(a request to run a runbook that could not be read)")]
    until = approval.expires_at.strftime("%H:%M UTC")
    title = str(payload.get("title") or approval.runbook)
    return [
        Section(
            f"🔐 {approval.asked_by} asks to run *{approval.what}*: {title}.\n"
            f"It changes the host, so another operator must approve it before {until}."
        ),
        Actions((Button("Approve", APPROVE, approval.id, "primary"), Button("Deny", DENY, approval.id, "danger"))),
        Context(f"Request {approval.id} · or type: approve {approval.id} / deny {approval.id}"),
    ]
