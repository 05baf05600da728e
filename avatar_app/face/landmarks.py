"""The MediaPipe face-mesh layout (478 points with iris) named in the terms the rest of the app uses.

Index lists come from MediaPipe's published face-mesh topology; chains are ordered so that the pipeline can
pair an upper lid with a lower lid, or an upper inner lip with a lower one, point by point.
"""

from __future__ import annotations

import numpy as np

N_POINTS = 478

# Points that move little with expression: forehead, temples, nose bridge and tip, cheekbones, eye corners.
RIGID = np.array([
    10, 338, 297, 332, 109, 67, 103, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 19, 2, 98, 327,
    234, 454, 93, 323, 127, 356, 33, 133, 362, 263, 116, 345, 123, 352, 50, 280, 101, 330,
])

# Eyes, each from its outer to its inner corner; the image-left eye (the person's right) first.
# upper/lower share the corner points at both ends.
EYE_UPPER = (
    np.array([33, 246, 161, 160, 159, 158, 157, 173, 133]),
    np.array([263, 466, 388, 387, 386, 385, 384, 398, 362]),
)
EYE_LOWER = (
    np.array([33, 7, 163, 144, 145, 153, 154, 155, 133]),
    np.array([263, 249, 390, 373, 374, 380, 381, 382, 362]),
)
IRIS_CENTER = (468, 473)
IRIS_RING = (np.array([469, 470, 471, 472]), np.array([474, 475, 476, 477]))

# Inner lip chains from the image-left mouth corner (78) to the right one (308).
LIP_INNER_UPPER = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308])
LIP_INNER_LOWER = np.array([78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308])
LIP_OUTER_UPPER = np.array([61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291])
LIP_OUTER_LOWER = np.array([61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291])
MOUTH_CORNERS = (78, 308)
# The lips as rows of nine columns (image-left to right, corners excluded): the upper lip from its outer edge
# down to the inner one, the lower lip from its inner edge down to the outer one.
LIP_UPPER_ROWS = np.array([
    [185, 40, 39, 37, 0, 267, 269, 270, 409],
    [184, 74, 73, 72, 11, 302, 303, 304, 408],
    [183, 42, 41, 38, 12, 268, 271, 272, 407],
    [191, 80, 81, 82, 13, 312, 311, 310, 415],
])
LIP_LOWER_ROWS = np.array([
    [95, 88, 178, 87, 14, 317, 402, 318, 324],
    [96, 89, 179, 86, 15, 316, 403, 319, 325],
    [77, 90, 180, 85, 16, 315, 404, 320, 307],
    [146, 91, 181, 84, 17, 314, 405, 321, 375],
])

# Brows, image-left (the person's right) first: the upper edge from inner to outer end, then the lower edge.
BROWS = (
    np.array([107, 66, 105, 63, 70, 55, 65, 52, 53, 46]),
    np.array([336, 296, 334, 293, 300, 285, 295, 282, 283, 276]),
)

CHIN = 152
FOREHEAD = 10
NOSE_TIP = 1


def _face_oval_loop() -> np.ndarray:
    """The face outline as one closed, ordered loop (MediaPipe gives it as unordered edges)."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_FACE_OVAL

    nxt: dict[int, list[int]] = {}
    for a, b in FACEMESH_FACE_OVAL:
        nxt.setdefault(a, []).append(b)
        nxt.setdefault(b, []).append(a)
    loop = [FOREHEAD]
    prev = None
    while True:
        cur = loop[-1]
        step = [n for n in nxt[cur] if n != prev]
        if not step or step[0] == loop[0]:
            break
        prev = cur
        loop.append(step[0])
    return np.array(loop)


FACE_OVAL = _face_oval_loop()


def face_triangles() -> np.ndarray:
    """The face-mesh surface as triangles (about 850): eyes and mouth are holes in it.

    MediaPipe publishes the tessellation as edges; its triangles are the 3-cliques of that graph, less the few
    cliques that are not faces (recognisable because they make an edge belong to three triangles).
    """
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    edges = {tuple(sorted(e)) for e in FACEMESH_TESSELATION}
    adj: dict[int, set[int]] = {}
    for a, b in edges:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    tris = sorted({tuple(sorted((a, b, c))) for a, b in edges for c in adj[a] & adj[b]})

    def tri_edges(t):
        return [(t[0], t[1]), (t[0], t[2]), (t[1], t[2])]

    count: dict[tuple[int, int], int] = {}
    for t in tris:
        for e in tri_edges(t):
            count[e] = count.get(e, 0) + 1
    # A spurious clique has all three edges shared by three triangles; real faces never do.
    kept = [t for t in tris if not all(count[e] > 2 for e in tri_edges(t))]
    return np.array(kept, dtype=np.int32)


# MediaPipe mesh index (or a pair to average) for each of the 68 iBUG/dlib points, in dlib order, from the
# public mp2dlib mapping (PeizhiYan/Mediapipe_2_Dlib_Landmarks) as listed in PAPER.md.
DLIB68_FROM_MESH: tuple[int | tuple[int, int], ...] = (
    # jaw 0-16, image-left to image-right
    127, 234, 93, (132, 58), (58, 172), 136, 150, 176, 152, 400, 379, 365, (397, 288), 361, 323, 454, 356,
    70, 63, 105, 66, 107,  # right brow 17-21
    336, 296, 334, 293, 300,  # left brow 22-26
    (168, 6), (197, 195), 5, 4,  # nose bridge 27-30
    75, 97, 2, 326, 305,  # nostrils 31-35
    33, 160, 158, 133, 153, 144,  # right eye 36-41
    362, 385, 387, 263, 373, 380,  # left eye 42-47
    61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91,  # outer lip 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lip 60-67
)


# The 68-point layout's parts: (name, first point, last point, whether it closes), first and last included.
DLIB68_PARTS = (
    ("jaw", 0, 16, False),
    ("right_brow", 17, 21, False),
    ("left_brow", 22, 26, False),
    ("nose_bridge", 27, 30, False),
    ("nostrils", 31, 35, False),
    ("right_eye", 36, 41, True),
    ("left_eye", 42, 47, True),
    ("outer_lip", 48, 59, True),
    ("inner_lip", 60, 67, True),
)


def dlib68_part(name: str) -> slice:
    """The points of one part of the 68-point layout (DLIB68_PARTS), as a slice."""
    for part, first, last, _ in DLIB68_PARTS:
        if part == name:
            return slice(first, last + 1)
    raise KeyError(name)


def to_dlib68(points: np.ndarray) -> np.ndarray:
    """The 68-point iBUG/dlib layout (68 x D, same columns) of a 478- or 468-point MediaPipe face."""
    points = np.asarray(points)
    if points.ndim != 2 or len(points) < 468:
        raise ValueError(f"expected MediaPipe face-mesh points (478 x D), got shape {points.shape}")
    src = points.astype(np.float64)
    out = np.array([src[list(i)].mean(axis=0) if isinstance(i, tuple) else src[i] for i in DLIB68_FROM_MESH])
    return out.astype(points.dtype if points.dtype.kind == "f" else np.float64)


def inter_ocular(points: np.ndarray) -> float:
    """Distance between the eye centres of a 478-point (iris centres) or 68-point (eye means) face."""
    p = np.asarray(points, np.float64)[:, :2]
    if len(p) == N_POINTS:
        left, right = p[IRIS_CENTER[0]], p[IRIS_CENTER[1]]
    elif len(p) == 68:
        left, right = p[dlib68_part("right_eye")].mean(axis=0), p[dlib68_part("left_eye")].mean(axis=0)
    else:
        raise ValueError(f"expected 478 or 68 landmarks, got {len(p)}")
    return float(np.linalg.norm(left - right))
