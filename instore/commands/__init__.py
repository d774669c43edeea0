"""The `instore` CLI's commands, one module (or package) per part or command group, mounted by
``instore.cli``; ``output`` is where the top-level ones print. Each imports its part only inside
the command that runs it, so `instore --help` stays fast and parts stay optional."""
