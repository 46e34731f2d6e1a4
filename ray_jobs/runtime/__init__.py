"""What every job shares: the command line and YAML configs, Ray start-up, outputs on a local disk or object storage
(atomic writes, settings, completion markers), work units streamed through read tasks, model actors and commit
tasks, progress lines and summaries."""
