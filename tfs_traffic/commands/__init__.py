"""One module per `tfs-traffic` subcommand."""
