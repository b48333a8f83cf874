"""What a run leaves in its output folder and how to read it: the ledger of what videolabel wrote,
``_run.json``, the tables (``run_output.RunOutput``), the report and the end-of-run summary."""
