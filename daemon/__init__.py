"""The daemon: a crash-safe drop-folder queue feeding one warm model."""
