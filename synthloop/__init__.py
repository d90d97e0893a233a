"""synthloop: procedural 3D scenes -> Blender renders -> exact annotations -> models -> back."""

__version__ = "0.1.0"
