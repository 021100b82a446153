"""An in-memory simulator of the useapi.net Runway API (``/v1/runwayml/...``).

It accepts ``videos/create`` like the real upstream (model checks, per-account ``maxJobs`` with the
exact 429 bodies, explore-mode throttling), runs each task through PENDING → [THROTTLED] → RUNNING
→ SUCCEEDED/FAILED on a timer, POSTs every step to the task's ``replyUrl`` (wrapped or bare,
``progressRatio`` as a string or a number, optionally duplicated, reordered, dropped or delayed by
:class:`Chaos`) and serves a real MP4/JPEG as artifacts with HTTP Range support.

Prompt markers: ``[reject]`` → 400, ``[nocredits]`` → 402, ``[moderate]`` → FAILED by moderation,
``[fail]`` → FAILED with a transient error.
"""

from .app import Simulator, create_app
from .engine import PREVIEW_JPG, SAMPLE_MP4, Chaos, SimError, SimTask

__all__ = ["PREVIEW_JPG", "SAMPLE_MP4", "Chaos", "SimError", "SimTask", "Simulator", "create_app"]
