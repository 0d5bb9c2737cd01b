"""What comes from disk or a user: data sets (data, data_files), uploads and their limits
(uploads), a user's own network (byo), and trained checkpoints with their one lookup (checkpoints)."""
