"""The render farm: deterministic, resumable shards of a render job, run anywhere, merged into one dataset."""
