"""An in-memory simulator of the useapi.net Runway API (``/v1/runwayml/...``).

It accepts ``videos/create`` like the real upstream (model checks, per-account ``maxJobs`` with the
exact 429 bodies, explore-mode throttling), runs each task through PENDING → [THROTTLED] → RUNNING
→ SUCCEEDED/FAILED on a timer, POSTs every step to the task's ``replyUrl`` (wrapped or bare,
``progressRatio`` as a string or a number, optionally duplicated, reordered, dropped or delayed by
:class:`Chaos`) and serves a real MP4/JPEG as artifacts with HTTP Range support.

Prompt markers: ``[reject]`` → 400, ``[nocredits]`` → 402, ``[moderate]`` → FAILED by moderation,
``[fail]`` → FAILED with a transient error, ``[stall]`` → stays RUNNING until cancelled;
once per replyRef: ``[error500]`` → 500 and nothing created,
``[accept500]`` → the task is created but the create is answered 500, ``[throttle]`` → Runway's 429.

Knobs: ``runway_capacity`` (Runway's own per-account limit, below ``maxJobs``: over it, its 429),
``runway_429_rate`` (random Runway 429s), ``create_delay`` (seconds between accepting a create and
answering it), ``chaos`` (callback misbehaviour). ``GET /sim/stats`` lists what reached the simulator.
"""

from .app import Simulator, create_app
from .engine import PREVIEW_JPG, SAMPLE_MP4, Chaos
from .tasks import SimTask
from .validation import SimError

__all__ = ["PREVIEW_JPG", "SAMPLE_MP4", "Chaos", "SimError", "SimTask", "Simulator", "create_app"]
