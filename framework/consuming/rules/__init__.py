"""Rules: the model (``model``), reading rules.json (``loader``), match conditions,
``{{ }}`` templates, the handler that runs a rule's steps for an event, and the step
records that make them idempotent."""
