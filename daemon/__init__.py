"""The daemon: lifecycle, DB, Notion gateway, intake, outbox, workers, leases, CLI."""
