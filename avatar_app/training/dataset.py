"""Episodes for meta-learning: K frames and one target frame of one clip, with their landmark images.

An episode's frames are chosen by a generator seeded from (run seed, epoch, position), never from global random
state, so a resumed run draws exactly the episodes the uninterrupted run would have drawn. The order of clips
comes from torch's DistributedSampler, so N processes see disjoint shares of each epoch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from avatar_app.errors import InputFileError, shown
from avatar_app.face.landmark_image import draw_landmarks, outer_lip_mask
from avatar_app.training.prepare import INDEX_FORMAT, INDEX_VERSION

_PREPARE = "run 'avatar-app prepare-data VIDEOS_DIR --out DATA_DIR' (it resumes where it stopped)"


@dataclass(frozen=True)
class Clip:
    id: str
    video: int  # row of the discriminator's W
    frames: int
    directory: Path
    warps: tuple[int, ...] = ()  # frames warped to every frame by prepare-data (the warp-conditioned G's input)


@dataclass(frozen=True)
class TrainingData:
    root: Path
    size: int
    image_format: str
    clips: list[Clip]
    videos: list[str]  # W's rows, in order


def read_index(root: str | Path) -> TrainingData:
    """The data folder's index, checked: every clip it lists must still be there."""
    root = Path(root)
    if not root.is_dir():
        raise InputFileError(f"{root}: no such data folder - {_PREPARE}")
    path = root / "index.json"
    if not path.is_file():
        raise InputFileError(f"{root}: no index.json, so not a prepared data folder - {_PREPARE}")
    try:
        index = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InputFileError(f"{path}: not a readable index - {_PREPARE}") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise InputFileError(f"{path}: not an avatar_app training index - {_PREPARE}")
    if index.get("version") != INDEX_VERSION:
        raise InputFileError(
            f"{path}: index version {shown(index.get('version'))}, this app reads {INDEX_VERSION} - {_PREPARE}")
    try:
        entries = [(str(c["id"]), str(c["video"]), int(c["frames"]), tuple(int(w) for w in c.get("warps", ())))
                   for c in index["clips"]]
        size, fmt = int(index["size"]), str(index["image_format"])
    except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: int(Infinity)
        raise InputFileError(f"{path}: index is missing fields - {_PREPARE}") from None
    # Clip ids name folders under clips/ (VoxCeleb2's 'id/video/clip'): an edited index must not point elsewhere.
    if size < 1 or any(not _inside(cid) or n < 1 or any(not 0 <= w < n for w in ws) for cid, _, n, ws in entries):
        raise InputFileError(f"{path}: index has malformed clips or size - {_PREPARE}")
    if not entries:
        raise InputFileError(f"{root}: the index lists no clips (see report.json for why each was skipped)")
    videos = sorted({v for _, v, _, _ in entries})
    row = {v: i for i, v in enumerate(videos)}
    clips = [Clip(cid, row[v], n, root / "clips" / cid, ws) for cid, v, n, ws in entries]
    missing = [c for c in clips if not (c.directory / "landmarks.npy").is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise InputFileError(f"{missing[0].directory}: clip vanished since the index was written{more} - {_PREPARE}")
    return TrainingData(root, size, fmt, clips, videos)


def _inside(clip_id: str) -> bool:
    """A relative path of plain names ('a/b/c'), nothing that climbs out or starts at the root."""
    parts = clip_id.split("/")
    return all(p not in ("", ".", "..") for p in parts) and "\\" not in clip_id and clip_id.isprintable()


class EpisodeDataset(Dataset):
    """Item (clip number, episode seed) -> one episode as tensors at the model's image size.

    frames (K, 3, S, S) RGB in [-1, 1]; landmarks (K, 3, S, S) in [0, 1]; target, target_landmarks (3, S, S);
    with ``warps``, also warp (3, S, S): the mesh renderer's warp of frames[0] to the target's landmarks (the
    warp-conditioned G's input); mouth (1, S, S): the target's mouth, inside the outer lip line (the content
    loss weighs it more: it is where a warp is most wrong); video (W's row); unreadable (frames that could not be read and were replaced by others of the clip);
    problem ("" or one line when the clip itself cannot be used - raised by the training loop, so the message
    reaches the user whole even from a loader worker).
    """

    def __init__(self, data: TrainingData, image_size: int, shots: int, thickness: int, warps: bool = False):
        self.data, self.size, self.shots, self.thickness, self.warps = data, image_size, shots, thickness, warps
        if warps:
            bare = [c for c in data.clips if not c.warps]
            if bare:
                raise InputFileError(f"{bare[0].directory}: the clip has no warps, which the warp-conditioned "
                                     f"generator needs - {_PREPARE} (with --warp-sources above 0)")

    def __len__(self) -> int:
        return len(self.data.clips)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        clip_no, seed = key
        clip = self.data.clips[clip_no]
        rng = np.random.default_rng(seed)
        k, s = self.shots, self.size
        item = {
            "frames": torch.zeros(k, 3, s, s), "landmarks": torch.zeros(k, 3, s, s),
            "target": torch.zeros(3, s, s), "target_landmarks": torch.zeros(3, s, s),
            "video": torch.tensor(clip.video), "unreadable": torch.tensor(0), "problem": "",
        }
        if self.warps:
            item.update(warp=torch.zeros(3, s, s), mouth=torch.zeros(1, s, s))
        try:
            points = np.load(clip.directory / "landmarks.npy", allow_pickle=False, mmap_mode="r")
        except (OSError, ValueError) as err:
            item["problem"] = f"{clip.directory}: clip vanished or damaged since the index was written ({err}) - {_PREPARE}"
            return item
        n = len(points)
        # K distinct sources and a target that is none of them (sources repeat only in clips shorter than K + 1).
        order = rng.permutation(n)
        if self.warps and n > 1:  # the first source is one of the warped frames, the target any other
            first = int(clip.warps[rng.integers(len(clip.warps))])
            rest = order[order != first]
            order = np.concatenate([rest[:1], [first], rest[1:]])
        target_at, sources = order[0], order[1:]
        if len(sources) < k:
            pool = sources if len(sources) else order
            sources = np.concatenate([pool[:1], rng.choice(pool, size=k - 1, replace=True)])
        chosen = [int(target_at)] + [int(i) for i in sources[:k]]
        spares = [int(i) for i in order[k + 1:]]
        images, marks, unreadable = [], [], 0
        for frame_no in chosen:
            image = self._read(clip, frame_no)
            while image is None:
                unreadable += 1
                if not spares:
                    item["problem"] = f"{clip.directory}: too many unreadable frames - {_PREPARE}"
                    return item
                frame_no = spares.pop()
                image = self._read(clip, frame_no)
            images.append(image)
            marks.append(draw_landmarks(points[frame_no], (0.0, 0.0, float(self.data.size)), s, self.thickness))
        if self.warps:
            warp = self._read(clip, chosen[0], source=chosen[1])
            if warp is None:
                item["problem"] = f"{clip.directory}: warp {chosen[1]}->{chosen[0]} is unreadable - {_PREPARE}"
                return item
            item["warp"] = torch.from_numpy(warp).permute(2, 0, 1).float() / 127.5 - 1.0
            item["mouth"] = torch.from_numpy(mouth_mask(points[chosen[0]], float(self.data.size), s))[None]
        rgb = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        lms = torch.from_numpy(np.stack(marks)).permute(0, 3, 1, 2).contiguous()
        item.update(frames=rgb[1:], landmarks=lms[1:], target=rgb[0], target_landmarks=lms[0],
                    unreadable=torch.tensor(unreadable))
        return item

    def _read(self, clip: Clip, frame_no: int, source: int | None = None) -> np.ndarray | None:
        """A frame (or, from ``source``, its warp to that frame) as RGB uint8 at the model's size, or None when
        the file is missing or damaged."""
        folder = clip.directory / ("frames" if source is None else f"warps/{source:05d}")
        image = cv2.imread(str(folder / f"{frame_no:05d}.{self.data.image_format}"), cv2.IMREAD_COLOR)
        if image is None:
            return None
        if image.shape[0] != self.size:
            image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def mouth_mask(points: np.ndarray, crop_side: float, size: int) -> np.ndarray:
    """(size, size) float32: 1 inside the outer lip line of 478 landmarks given in a crop of ``crop_side`` pixels."""
    from avatar_app.face.landmarks import to_dlib68

    return outer_lip_mask(to_dlib68(np.asarray(points, np.float64)) * (size / crop_side), (size, size)).astype(np.float32)


class EpisodePlan:
    """The batches of episodes one process trains on, from a given step on: an iterable of batch keys.

    Each epoch, DistributedSampler shuffles the clips (the same way in every process) and hands this process
    its share; batches are consecutive slices of it. Step s (counted from 1) is batch (s - 1) mod
    steps_per_epoch of epoch (s - 1) div steps_per_epoch, so resuming at any step needs no state but the step.
    """

    def __init__(self, dataset: EpisodeDataset, batch_size: int, rank: int, world_size: int, seed: int,
                 first_step: int, last_step: int):
        self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.batch_size, self.rank, self.seed = batch_size, rank, seed
        self.first_step, self.last_step = first_step, last_step
        self.steps_per_epoch = math.ceil(len(dataset) / world_size) // batch_size
        if self.steps_per_epoch < 1:
            raise InputFileError(
                f"{dataset.data.root}: {len(dataset)} clips cannot fill one batch of {batch_size} per process"
                f" x {world_size} process(es) - lower --batch-size or prepare more clips")

    def __len__(self) -> int:
        return max(0, self.last_step - self.first_step + 1)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.first_step
        while step <= self.last_step:
            epoch, batch = divmod(step - 1, self.steps_per_epoch)
            self.sampler.set_epoch(epoch)
            order = list(self.sampler)
            for b in range(batch, self.steps_per_epoch):
                if step > self.last_step:
                    return
                at = b * self.batch_size
                yield [(clip, _episode_seed(self.seed, epoch, self.rank, at + j))
                       for j, clip in enumerate(order[at : at + self.batch_size])]
                step += 1


def _episode_seed(seed: int, epoch: int, rank: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank, position]).generate_state(1, np.uint64)[0]) >> 1

