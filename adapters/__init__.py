"""Platform adapters: translate platform events into Messages and Bot replies back out."""
