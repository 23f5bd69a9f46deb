"""The tamper-evident audit chain: appending, the link rules, export and trim
behind a checkpoint, and archive files."""
