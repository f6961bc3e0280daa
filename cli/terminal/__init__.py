"""What every command shares with its user: options, output, errors, progress, durations."""
