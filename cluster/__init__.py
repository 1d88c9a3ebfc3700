"""Running hcsync: settings, the embedded stack, the command line and deployment files."""
