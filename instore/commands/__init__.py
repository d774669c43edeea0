"""Sub-command groups of the `instore` CLI, one module per part. Each imports its part only
inside the command that runs it, so `instore --help` stays fast and parts stay optional."""
