"""The picture the call gets, measured: how sharp the face is, how the head is framed, what it costs.

1. **sharpness**: per portrait (the shipped paintings and the shared portraits), the variance of the Laplacian of
   the inner face in the 1280x720 call picture ("follow") over that of the same face resized from the portrait
   with cubic interpolation to the same eye distance: at rest and over a driven clip (median of its frames). The
   row "render then resize" is the way the app used to make it (the renderer's picture at --size, its crop
   stretched to 1280x720), for comparison. Target: >= 0.8.
2. **framing** (--framing-clips): every frame of the shared clips driving each shared portrait: the top of the
   head (the crown, from the person mask, moved with the head) inside the picture with headroom, and the face's
   height (forehead to chin) as a share of the picture's. Targets: headroom on every frame, 28-40 %.
3. **upscalers** (--upscalers): for the portraits the call picture enlarges, each OpenCV interpolation as the
   once-per-avatar upscale: sharpness ratio and milliseconds.

    python benchmarks/call_picture.py [--size 512] [--driver VIDEO] [--framing-clips] [--upscalers] [--sheets DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from avatar_app.call import picture as call_picture
from avatar_app.call.framing import HEADROOM, FramingSettings
from avatar_app.call.picture import CallPicture, CallSettings, crop_affine
from avatar_app.face import landmarks as L
from avatar_app.face.geometry import fit_similarity
from avatar_app.pipeline.animator import Animator
from avatar_app.pipeline.avatar import load_portrait_or_avatar
from avatar_app.pipeline.frame import Frame
from avatar_app.pipeline.reference import choose_reference
from avatar_app.pipeline.render.base import RenderSettings
from avatar_app.pipeline.stages import StageLoop, track_video

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
SHIPPED = sorted((ROOT / "assets" / "portraits").glob("*.jpg"))
SHARED = sorted(MEDIA.glob("portrait_*.jpg"))
CALL = (1280, 720)


def sharpness(image: np.ndarray, mask: np.ndarray) -> float:
    """High-frequency energy: the variance of the Laplacian of the grey picture inside ``mask``."""
    lap = cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F)
    return float(lap[mask].var())


def inner_face(points: np.ndarray, size: tuple[int, int], shrink: float = 0.85) -> np.ndarray:
    """The inner face (the outline shrunk about its centre) as a boolean image; points in that image's pixels."""
    oval = points[L.FACE_OVAL, :2]
    oval = oval.mean(0) + shrink * (oval - oval.mean(0))
    mask = np.zeros(size[::-1], np.uint8)
    cv2.fillPoly(mask, [np.round(oval).astype(np.int32)], 1)
    return mask.astype(bool)


def eye_distance(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[L.IRIS_CENTER[0], :2] - points[L.IRIS_CENTER[1], :2]))


def reference_sharpness(avatar, target_in_picture: np.ndarray) -> float:
    """The portrait's own face, cubic-resized so its eye distance is the picture's, Laplacian variance inside it."""
    rest = np.asarray(avatar.landmarks, np.float64)
    k = eye_distance(target_in_picture) / eye_distance(rest)
    h, w = avatar.image.shape[:2]
    size = (max(2, round(w * k)), max(2, round(h * k)))
    big = cv2.resize(avatar.image, size, interpolation=cv2.INTER_CUBIC)
    return sharpness(big, mask=inner_face(rest * k, size))


def in_picture(points: np.ndarray, crop) -> np.ndarray:
    a, x0, y0 = crop_affine(crop, CALL)
    out = np.asarray(points, np.float64).copy()
    out[:, 0] = (out[:, 0] - x0) / a
    out[:, 1] = (out[:, 1] - y0) / a
    return out


def render_then_resize(animator, target, crop) -> np.ndarray:
    """The old way: the renderer's picture at its working size, the crop cut from it and stretched."""
    image = animator.render(target)
    k = image.shape[1] / animator.avatar.size[0]
    a, x0, y0 = crop_affine(crop, CALL)
    m = np.array([[a * k, 0, (x0 + 0.5) * k - 0.5], [0, a * k, (y0 + 0.5) * k - 0.5]], np.float32)
    return cv2.warpAffine(image, m, CALL, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def sharpness_rows(portraits: list[Path], size: int, drivers, sheets: Path | None) -> list[dict]:
    rows = []
    for path in portraits:
        avatar = load_portrait_or_avatar(path)
        animator = Animator(avatar, RenderSettings(size=size))
        stage = CallPicture(CallSettings())
        loop = StageLoop(animator, call=stage, media_time=True)
        ratios, old_ratios = [], []
        targets = [avatar.landmarks]
        if drivers is not None:
            points, times = drivers
            animator.calibrate(points[choose_reference(points).index])
            for i, (d, t) in enumerate(zip(points, times)):
                if d is not None and i % 3 == 0:
                    targets.append(animator.target(d, t))
        first = None
        for i, target in enumerate(targets):
            frame = Frame(np.zeros((2, 2, 3), np.uint8), i, i / 25, t_media=i / 25)
            frame.target, frame.animator = np.asarray(target, np.float32), animator
            loop.render(frame)
            crop = stage.framer._last or stage.framer.crop(target, avatar.landmarks,
                                                           stage._scene(animator).crown, avatar.size, 0)
            pts = in_picture(target, crop)
            mask = inner_face(pts, CALL)
            ref = reference_sharpness(avatar, pts)
            ratios.append(sharpness(frame.call_image, mask=mask) / ref)
            old_ratios.append(sharpness(render_then_resize(animator, target, crop), mask=mask) / ref)
            if first is None:
                first = frame.call_image
        if sheets is not None and first is not None:
            sheets.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(sheets / f"call_{path.stem}.png"), first)
        rows.append({"portrait": path.name, "at_rest": ratios[0], "driven_median": float(np.median(ratios[1:]))
                     if len(ratios) > 1 else None, "old_at_rest": old_ratios[0],
                     "old_driven_median": float(np.median(old_ratios[1:])) if len(old_ratios) > 1 else None,
                     "source_scale": stage._scene(animator).k})
        animator.close()
    return rows


def framing_rows(portraits: list[Path], clips: list[Path]) -> list[dict]:
    """Per portrait: over every frame of every clip, the headroom above the crown and the face's share."""
    from avatar_app.call.background import avatar_mask
    from avatar_app.call.framing import Framer, crown

    tracked = {}
    for clip in clips:
        tracked[clip.name] = track_video(clip)
    rows = []
    for path in portraits:
        avatar = load_portrait_or_avatar(path)
        top = crown(avatar.landmarks, avatar_mask(avatar), avatar.size)
        rigid = np.asarray(avatar.landmarks, np.float64)[L.RIGID, :2]
        headroom, shares, frames, cut = [], [], 0, 0
        for name, (points, times) in tracked.items():
            animator = Animator(avatar, RenderSettings(size=128))
            animator.calibrate(points[choose_reference(points).index])
            framer = Framer(FramingSettings())
            for d, t in zip(points, times):
                target = animator.target(d, t)
                cx, cy, ch = framer.crop(target, avatar.landmarks, top, avatar.size, t)
                head = fit_similarity(rigid, np.asarray(target, np.float64)[L.RIGID, :2])
                crown_y = head.apply(top[None])[0][1]
                room = (crown_y - (cy - ch / 2)) / ch
                headroom.append(room)
                shares.append(np.ptp(np.asarray(target)[:, 1]) / ch)
                cut += room < 0
                frames += 1
            animator.close()
        rows.append({"portrait": path.name, "frames": frames, "crown_cut_frames": int(cut),
                     "headroom_min": float(np.min(headroom)), "headroom_median": float(np.median(headroom)),
                     "share_min": float(np.min(shares)), "share_median": float(np.median(shares)),
                     "share_max": float(np.max(shares)),
                     "share_in_28_40": float(np.mean((np.array(shares) >= 0.28) & (np.array(shares) <= 0.40)))})
    return rows


def upscaler_rows(portraits: list[Path], size: int) -> list[dict]:
    rows = []
    methods = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "lanczos4": cv2.INTER_LANCZOS4}
    for path in portraits:
        avatar = load_portrait_or_avatar(path)
        k = call_picture.source_scale(avatar, FramingSettings())
        if k <= 1.0:
            continue
        for name, method in methods.items():
            call_picture.UPSCALE_METHOD = method
            t0 = time.perf_counter()
            call_picture.resample(np.dstack([avatar.image, avatar.image[..., :1]]), k)
            ms = (time.perf_counter() - t0) * 1000
            rows.append({"portrait": path.name, "upscale": round(k, 2), "method": name, "ms": ms,
                         "at_rest": sharpness_rows([path], size, None, None)[0]["at_rest"]})
        call_picture.UPSCALE_METHOD = cv2.INTER_LANCZOS4
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="the renderer's working size (default 512)")
    parser.add_argument("--driver", type=Path, default=MEDIA / "driving_man_talking_vox.mp4")
    parser.add_argument("--framing-clips", action="store_true", help="framing over all 38 shared clips")
    parser.add_argument("--upscalers", action="store_true", help="compare the upscalers on enlarged portraits")
    parser.add_argument("--sheets", type=Path, default=None, help="write each portrait's call picture at rest here")
    args = parser.parse_args(argv)
    portraits = SHIPPED + [p for p in SHARED if p.name not in ("portrait_mona_lisa.jpg", "portrait_girl_with_pearl_earring.jpg")]
    drivers = track_video(args.driver) if args.driver.is_file() else None
    print(f"## Sharpness of the face in the {CALL[0]}x{CALL[1]} call picture (follow), Laplacian variance over a"
          f" cubic resize of the portrait at the same eye distance; working size {args.size}")
    print(f"{'portrait':<40} {'scale':>5} {'rest':>6} {'driven':>7} | {'old rest':>8} {'old driven':>10}")
    for r in sharpness_rows(portraits, args.size, drivers, args.sheets):
        print(f"{r['portrait']:<40} {r['source_scale']:>5.2f} {r['at_rest']:>6.2f} {r['driven_median'] or 0:>7.2f} |"
              f" {r['old_at_rest']:>8.2f} {r['old_driven_median'] or 0:>10.2f}")
    if args.upscalers:
        print("\n## Upscalers (once per avatar) for the portraits the call picture enlarges")
        for r in upscaler_rows(portraits, args.size):
            print(f"{r['portrait']:<40} x{r['upscale']:<5} {r['method']:<9} {r['ms']:6.1f} ms  sharpness {r['at_rest']:.2f}")
    if args.framing_clips:
        if not MEDIA.is_dir():
            sys.exit(f"{MEDIA}: shared media not found")
        clips = sorted(MEDIA.glob("driving_*.mp4")) + sorted((MEDIA / "train").glob("*.mp4"))
        print(f"\n## Framing over {len(clips)} clips (every frame; headroom above the crown and face share of the"
              f" picture's height; HEADROOM asked: {HEADROOM:.2f})")
        for r in framing_rows(SHARED or SHIPPED, clips):
            print(f"{r['portrait']:<40} {r['frames']:>6} frames, crown cut in {r['crown_cut_frames']}, headroom min"
                  f" {r['headroom_min']:.3f} median {r['headroom_median']:.3f}; face share {r['share_min']:.2f}-"
                  f"{r['share_max']:.2f} (median {r['share_median']:.2f}), {r['share_in_28_40']:.1%} of frames in 28-40 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
