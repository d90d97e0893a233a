"""Writers from the in-memory Dataset to ecosystem formats (COCO, ...)."""
