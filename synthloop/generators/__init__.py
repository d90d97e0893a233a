"""Rendering backends (Blender) and the generation loop that writes dataset folders."""
