"""Recipes (what may vary, as distributions) and the sampler that turns them into SceneSpecs."""
