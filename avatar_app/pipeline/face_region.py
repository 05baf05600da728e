"""The tracker's fast path: MediaPipe's face landmark model run on the region the face held in the previous
frame, and its face detector only when there is no face to follow.

MediaPipe's FaceMesh graph asked for up to ``max_faces`` faces runs its detector on every frame with fewer
faces, which is most of its 9-10 ms per frame. Here the same landmark subgraph (``FaceLandmarkCpu``: the
attention mesh with irises, its crop, refinement and projection, all inside the wheel's native code) is fed a
region computed in Python the way FaceMesh computes it (given the same previous landmarks, the same
landmarks to 0.001 px), so the landmarks stay FaceMesh's (0.06 px mean on 37 of the 38 clips, see
benchmarks/tracker_speed.py) for about 3 ms a frame. The wheel's attention model cannot run outside
MediaPipe's graphs: it holds MediaPipe's own custom TFLite ops, and Tasks' FaceLandmarker wants another model.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from google.protobuf import text_format
from mediapipe.framework import calculator_pb2
from mediapipe.framework.formats import rect_pb2
from mediapipe.python.solution_base import SolutionBase
from mediapipe.python.solutions import face_detection as mp_face_detection

from avatar_app.pipeline.mediapipe_native import landmark_array, quiet_native_logs

# FaceMesh's own region rules (face_landmark_landmarks_to_roi and face_detection_front_detection_to_roi in
# MediaPipe): the box around the landmarks (or the detection), squared on its longer side, 1.5 times as
# large, turned so the eye line is level; the eye line runs from landmark 33 to 263 (the outer eye corners),
# or from the detector's first to its second keypoint.
_REGION_SCALE = 1.5
_EYE_LINE = (33, 263)

_LANDMARK_GRAPH = """
input_stream: "image"
input_stream: "roi"
input_side_packet: "with_attention"
output_stream: "face_landmarks"
node {
  calculator: "FaceLandmarkCpu"
  input_stream: "IMAGE:image"
  input_stream: "ROI:roi"
  input_side_packet: "WITH_ATTENTION:with_attention"
  output_stream: "LANDMARKS:face_landmarks"
}
"""


def _region(cx: float, cy: float, width: float, height: float, eye_a, eye_b, w: int, h: int):
    """FaceMesh's NormalizedRect for a box (centre and size in pixels) and its eye line, in an image w x h."""
    rotation = -math.atan2(-(eye_b[1] - eye_a[1]), eye_b[0] - eye_a[0])
    rotation -= 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))
    side = max(width, height) * _REGION_SCALE
    return rect_pb2.NormalizedRect(
        x_center=cx / w, y_center=cy / h, width=side / w, height=side / h, rotation=rotation
    )


def region_from_landmarks(points: np.ndarray, w: int, h: int):
    """The region the landmark model looks at in the next frame, from this frame's (478, 3) pixel landmarks."""
    x0, y0 = points[:, :2].min(axis=0)
    x1, y1 = points[:, :2].max(axis=0)
    return _region(
        (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, points[_EYE_LINE[0]], points[_EYE_LINE[1]], w, h
    )


def region_from_detection(detection, w: int, h: int):
    """The region around a face the detector found (a mediapipe Detection, normalised coordinates)."""
    box = detection.location_data.relative_bounding_box
    eyes = [(k.x * w, k.y * h) for k in detection.location_data.relative_keypoints[:2]]
    return _region(
        (box.xmin + box.width / 2) * w, (box.ymin + box.height / 2) * h, box.width * w, box.height * h,
        eyes[0], eyes[1], w, h,
    )


class RegionMesh:
    """Landmarks of one face followed from frame to frame; the detector runs only while there is none.

    Same calls as the tracker's FaceMesh wrapper (``faces`` and ``close``). A newly detected face is landmarked
    twice on its frame, on the detector's region then on its own landmarks' region, so its first landmarks are
    on the same scale as the tracked frames after it (FaceTracker does the same for the FaceMesh graph). The
    largest detected face is followed until it is lost; a larger face coming in later is not switched to.
    """

    def __init__(self, *, detection: float, tracking: float) -> None:
        with quiet_native_logs():
            self._landmarks = SolutionBase(
                graph_config=text_format.Parse(_LANDMARK_GRAPH, calculator_pb2.CalculatorGraphConfig()),
                side_inputs={"with_attention": True},
                calculator_params={"facelandmarkcpu__ThresholdingCalculator.threshold": tracking},
                outputs=["face_landmarks"],
            )
            self._detector = mp_face_detection.FaceDetection(model_selection=0, min_detection_confidence=detection)
            blank = np.zeros((64, 64, 3), dtype=np.uint8)
            self._detector.process(blank)
            self._landmarks.process({"image": blank, "roi": rect_pb2.NormalizedRect(
                x_center=0.5, y_center=0.5, width=1.0, height=1.0)})
        self._previous: np.ndarray | None = None
        self.detections = 0  # detector runs so far: a lost face shows as one more

    def faces(self, image_bgr: np.ndarray) -> list[np.ndarray]:
        """The followed face's float32 (478, 3) pixel landmarks in a BGR image as a one-item list, or []."""
        h, w = image_bgr.shape[:2]
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        rgb.flags.writeable = False
        points = None
        if self._previous is not None:
            points = self._landmarked(rgb, region_from_landmarks(self._previous, w, h))
        if points is None:
            # Lost (or never found): look again on this very frame, not the next one.
            points = self._detected(rgb)
        self._previous = points
        return [] if points is None else [points]

    def _detected(self, rgb: np.ndarray) -> np.ndarray | None:
        h, w = rgb.shape[:2]
        self.detections += 1
        found = self._detector.process(rgb).detections
        if not found:
            return None
        largest = max(found, key=lambda d: d.location_data.relative_bounding_box.width
                      * d.location_data.relative_bounding_box.height)
        points = self._landmarked(rgb, region_from_detection(largest, w, h))
        if points is None:
            return None
        again = self._landmarked(rgb, region_from_landmarks(points, w, h))
        return points if again is None else again

    def _landmarked(self, rgb: np.ndarray, region) -> np.ndarray | None:
        result = self._landmarks.process({"image": rgb, "roi": region})
        if result.face_landmarks is None:
            return None
        h, w = rgb.shape[:2]
        return landmark_array(result.face_landmarks) * np.array([w, h, w], dtype=np.float32)

    def forget(self) -> None:
        """Look for a face afresh on the next frame (the source jumped to another video or camera)."""
        self._previous = None

    def close(self) -> None:
        self._landmarks.close()
        self._detector.close()
