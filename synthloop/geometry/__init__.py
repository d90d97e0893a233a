"""Pure numpy math: meshes, camera projection, rasterization, masks, per-object annotation."""
