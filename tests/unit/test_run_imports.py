"""What `ftpexport run` imports on an empty inbox (issue 16, start-up): nothing that only a webhook
request needs. Checked in a fresh process, since this one has imported them already;
no timing here."""

from __future__ import annotations

from pathlib import Path

from fresh_process import empty_run, run_cli

#: loaded when a webhook is sent (the HTTPS client), never by a run that sends none
LAZY = ("ftpexport.webhooks.client", "http.client")


def test_a_run_on_an_empty_inbox_loads_no_webhook_client(tmp_path: Path) -> None:
    ended = run_cli("-q", *empty_run(tmp_path), "--json")

    assert ended.status == 0
    # it did run, with its notifier (which sends what earlier runs left pending in the ledger)
    assert {"ftpexport.pipeline", "ftpexport.webhooks.outbox"} <= ended.modules
    assert sorted(m for m in LAZY if m in ended.modules) == []
