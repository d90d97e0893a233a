"""Pure numpy math: meshes, camera projection, rasterization, masks, per-object annotation.

Nothing here imports ``bpy``. Modules:

* :mod:`~synthloop.geometry.transforms` -- quaternions (w, x, y, z), rigid 4x4 transforms.
* :mod:`~synthloop.geometry.meshes` -- ``build_mesh(ShapeSpec) -> Mesh`` and its LRU ``mesh_cache``.
* :mod:`~synthloop.geometry.camera` -- ``BLENDER_TO_CV``, intrinsics K, world_to_cam (OpenCV), project.
* :mod:`~synthloop.geometry.raster` -- pixel-centre triangle rasterizer, near clipping, z-buffer.
* :mod:`~synthloop.geometry.masks` -- COCO RLE, tight boxes, box conversions and IoU.
* :mod:`~synthloop.geometry.annotate` -- ``annotate_frame(spec, instance_ids, depth)``.
* :mod:`~synthloop.geometry.preview` -- Blender-free z-buffer preview image of a SceneSpec.
"""
