"""Publishing to YouTube: each channel's sign-in (accounts), the daily quota per Google Cloud
project (quota), the installed-app sign-in flow (oauth), and what the worker checks before an
upload runs and books after it (gate)."""
