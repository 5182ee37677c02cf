"""Notion: the gateway (one token bucket, one retry policy), schema check, intake and the outbox."""
