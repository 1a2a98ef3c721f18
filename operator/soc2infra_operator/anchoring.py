"""Scheduled anchoring: every ``anchor.interval_seconds`` a signed checkpoint of the ledger's head
goes to ``anchor.target`` (an Object Lock bucket, or a git work tree), so that a later rewrite of
the ledger is caught by ``evidence verify --expect-head "$(soc2infra evidence anchor-head …)"``.

A head that has not moved since the last checkpoint is not written again; a failed round is
logged and retried at the next interval (the ledger and the admissions do not depend on it).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from soc2infra.evidence import EvidenceError, open_ledger, write_checkpoint
from soc2infra_operator.settings import AnchorSettings

logger = logging.getLogger("soc2infra_operator.anchoring")


def anchor_once(anchor: AnchorSettings, ledger: str, signing_key: str | None,
                last: str | None = None) -> str | None:
    """Write one checkpoint unless the head is still *last*; returns the anchored ``SEQ:HASH``
    (or *last*, unchanged; None for an empty ledger)."""
    with open_ledger(ledger, create=False) as led:
        head = led.head()
    if head is None or str(head) == last:
        return last if head is not None else None
    checkpoint, where = write_checkpoint(ledger, anchor.target or "", anchor.name,
                                         Path(signing_key) if signing_key else None,
                                         s3_endpoint=anchor.s3_endpoint, retention_days=anchor.retention_days,
                                         mode=anchor.lock_mode)
    logger.info("anchored %s in %s", checkpoint.anchor, where)
    return str(checkpoint.anchor)


async def anchor_loop(anchor: AnchorSettings, ledger: str, signing_key: str | None) -> None:
    """Anchor every ``interval_seconds`` until cancelled."""
    await asyncio.sleep(anchor.initial_delay_seconds)
    last: str | None = None
    while True:
        try:
            last = await asyncio.to_thread(anchor_once, anchor, ledger, signing_key, last)
        except asyncio.CancelledError:
            raise
        except EvidenceError as exc:  # the store or the ledger said no: say why, try again later
            logger.error("anchoring failed: %s", exc)
        except Exception:  # noqa: BLE001 - one failed round must not end the schedule
            logger.exception("anchoring failed")
        await asyncio.sleep(anchor.interval_seconds)
