"""The command line: `cli.py` builds the parser and turns user errors into one line and exit code 2; each command
lives in its own module with `register(subparsers)` and imports its heavy packages only when it runs."""
