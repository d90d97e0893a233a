"""The in-memory dataset type and the synthloop dataset folder (records on disk)."""
