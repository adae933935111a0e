"""Pose bookkeeping between crops: a label's pose moves exactly with every crop transform.

A 62-vector's pose maps model vertices into the *model frame* of one crop (see :mod:`drtn.crop`). Re-cropping
(jitter, scale, in-plane rotation) or mirroring the image changes only that frame, so the new pose is the old one
composed with an exact 4x4 frame change; identity and expression stay as they are (mirroring is handled by
re-fitting, not here).
"""

from __future__ import annotations

# The conversions live once, in drtn.crop; these names are kept for the training modules.
from drtn.crop import box_image_to_model_matrix, image_to_model_matrix  # noqa: F401
from drtn.crop import pose_crop_to_image as pose_to_image  # noqa: F401
from drtn.crop import pose_image_to_crop as pose_to_crop  # noqa: F401
