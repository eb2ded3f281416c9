"""The daemon's moving parts: dispatching runs to processes, capturing output, cron."""
