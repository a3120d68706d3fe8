"""The panel's alerts from a real SQLite event log: what calls for attention, until acknowledged."""

from __future__ import annotations

from pathlib import Path

from activator.admin.panel import ACKS, alerts
from activator.store import Store


async def test_alerts_are_what_calls_for_attention_until_acknowledged(tmp_path: Path) -> None:
    store = Store(tmp_path / "d.db")
    await store.open()
    try:
        await store.record("(host)", "threshold", "cpu", detail="cpu 91.0 above 80 (warning)")
        await store.record("(host)", "threshold", "cpu", detail="cpu 60.0 back below 72, 80 less its margin (ok)")
        await store.record("blog", "start", "request", 300.0)
        await store.record("blog", "crash", "exit", detail="its container exited with code 1")
        await store.record("(backups)", "backup_failed", "schedule", detail="restic: repository locked")
        found = await alerts(store.db, 0.0)
        assert [(a["site"], a["kind"]) for a in found] == [
            ("(backups)", "backup_failed"), ("blog", "crash"), ("(host)", "threshold"),
        ]  # fmt: skip
        await store.db.execute(ACKS)
        await store.db.execute("INSERT INTO alert_acks VALUES (?, 0)", (found[1]["id"],))
        assert [a["kind"] for a in await alerts(store.db, 0.0)] == ["backup_failed", "threshold"]
    finally:
        await store.close()
