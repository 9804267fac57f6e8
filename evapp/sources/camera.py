"""Live USB cameras (DVXplorer, DAVIS, DVS128) through dv-processing (event-io.md section 1.2)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from evapp.errors import InputError, SourceLost
from evapp.events import SensorGeometry
from evapp.sources.base import LiveSource

# --camera words mapped onto dv-processing CameraModel names.
CAMERA_KINDS = {
    "dvxplorer": ("DVXPLORER", "DVXPLORER_M", "DVXPLORER_S", "DVXPLORER_GEN2"),
    "davis": ("DAVIS", "DAVIS_GEN2"),
    "dvs128": ("DVS128",),
}


@dataclass(frozen=True)
class CameraDescriptor:
    model: str
    serial: str
    descriptor: object = None


def list_cameras() -> list[CameraDescriptor]:
    """Cameras dv-processing can see right now (an empty list when none is plugged in)."""
    import dv_processing as dv

    found = []
    for d in dv.io.camera.discover():
        model = getattr(d.cameraModel, "name", str(d.cameraModel)).split(".")[-1]
        found.append(CameraDescriptor(model, str(d.serialNumber), d))
    return found


def find_camera(request: str) -> CameraDescriptor:
    """Pick a camera by kind word or serial number; one sentence listing what exists when it is absent."""
    cameras = list_cameras()
    wanted = CAMERA_KINDS.get(request.lower())
    for cam in cameras:
        if (wanted and cam.model in wanted) or cam.serial == request:
            return cam
    seen = ", ".join(f"{c.model} {c.serial}" for c in cameras) or "no camera at all"
    raise InputError(f"No camera matching '{request}' was found (dv-processing sees: {seen}).")


class CameraSource(LiveSource):
    """Events from a USB camera; ``getNextEventBatch`` returns None when no data is ready yet, so we poll."""

    format_name = "camera"

    def __init__(self, request: str, poll_s: float = 0.0005):
        import dv_processing as dv

        self.request = request
        cam = find_camera(request)
        try:
            self._camera = dv.io.camera.open(cam.descriptor)
        except (RuntimeError, IndexError) as exc:
            raise InputError(f"The camera {cam.model} {cam.serial} could not be opened ({exc}).") from None
        resolution = self._camera.getEventResolution()
        if resolution is None:
            raise InputError(f"The camera {cam.model} {cam.serial} has no event output.")
        super().__init__(SensorGeometry(int(resolution[0]), int(resolution[1]), self._camera.getCameraName()))
        self.poll_s = poll_s

    def _raw_batches(self):
        cam = self._camera
        last_data = time.monotonic()
        while not self._stop_requested:
            if not cam.isRunning():
                raise SourceLost(f"The camera {self.geometry.name} stopped delivering events (unplugged?).")
            try:
                store = cam.getNextEventBatch()
            except RuntimeError as exc:
                raise SourceLost(f"The camera {self.geometry.name} broke off ({exc}).") from None
            if store is not None and len(store):
                last_data = time.monotonic()
                batch = self._deliver(store)
                if batch is not None:
                    yield batch
            else:
                # Poll fast while data flows; after 20 ms of silence every 5 ms, so a still scene costs no CPU.
                time.sleep(self.poll_s if time.monotonic() - last_data < 0.02 else 0.005)

    def describe(self) -> str:
        return self.geometry.name

    def close(self) -> None:
        if self._camera is not None:
            self._drain_to_hooks(self._camera.getNextEventBatch)
        self._camera = None
