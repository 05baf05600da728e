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
from avatar_app.face.landmark_image import draw_landmarks, draw_mouth_landmarks, inner_lip_mask, outer_lip_mask
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
    task: str = "face"  # what the crops are: "face" or "mouth" (prepare-data --task)


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
        size, fmt, task = int(index["size"]), str(index["image_format"]), str(index.get("task", "face"))
    except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: int(Infinity)
        raise InputFileError(f"{path}: index is missing fields - {_PREPARE}") from None
    # Clip ids name folders under clips/ (VoxCeleb2's 'id/video/clip'): an edited index must not point elsewhere.
    if size < 1 or task not in ("face", "mouth") or \
            any(not _inside(cid) or n < 1 or any(not 0 <= w < n for w in ws) for cid, _, n, ws in entries):
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
    return TrainingData(root, size, fmt, clips, videos, task)


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
            "video": torch.tensor(clip.video), "unreadable": torch.tensor(0), "target_frame": torch.tensor(0),
            "problem": "",
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
        images, marks, used, unreadable = [], [], [], 0
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
            used.append(frame_no)
            marks.append(self.landmark_image(points[frame_no]))
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
                    unreadable=torch.tensor(unreadable), target_frame=torch.tensor(used[0]))
        return item

    def landmark_image(self, points: np.ndarray) -> np.ndarray:
        """(S, S, 3) float32 in [0, 1]: the landmark image of one frame's landmarks (given in the data's crop pixels)."""
        return draw_landmarks(points, (0.0, 0.0, float(self.data.size)), self.size, self.thickness)

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


class MouthEpisodeDataset(EpisodeDataset):
    """Episodes of mouth crops (prepare-data --task mouth) for the mouth model: as EpisodeDataset's, with the lip
    landmark image (draw_mouth_landmarks) and two more items:

    driver (4, S, S): the mouth G is told to follow, degraded so that G cannot copy it (degrade_driver), from the
    target frame itself or (``other_frame`` of the time) another frame of the clip; with probability ``drop`` it is
    missing (all zeros, its presence channel 0), as when the app has no usable view of the user's mouth.
    mouth (1, S, S): the target's opening inside the inner lip line, grown by a pixel (the content loss weighs it
    more: it is what this model is for, and a few percent of the crop).
    """

    def __init__(self, data: TrainingData, image_size: int, shots: int, thickness: int, drop: float = 0.2,
                 other_frame: float = 0.5):
        super().__init__(data, image_size, shots, thickness)
        if data.task != "mouth":
            raise InputFileError(f"{data.root}: holds {data.task} crops, and the mouth model needs mouth crops - run "
                                 "'avatar-app prepare-data VIDEOS_DIR --out DATA_DIR --task mouth'")
        self.drop, self.other_frame = drop, other_frame

    def landmark_image(self, points: np.ndarray) -> np.ndarray:
        return draw_mouth_landmarks(np.asarray(points) * (self.size / self.data.size), self.size, self.thickness)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        item = super().__getitem__(key)
        s = self.size
        item["driver"], item["mouth"] = torch.zeros(4, s, s), torch.zeros(1, s, s)
        if item["problem"]:
            return item
        clip = self.data.clips[key[0]]
        # Its own stream, so the episode's frames are those EpisodeDataset draws for the same seed.
        rng = np.random.default_rng([key[1], 1])
        target_at = int(item["target_frame"])
        points = np.load(clip.directory / "landmarks.npy", allow_pickle=False, mmap_mode="r")
        item["mouth"] = torch.from_numpy(inner_lip_mask(points[target_at] * (s / self.data.size), s))[None]
        if rng.random() < self.drop:
            return item
        image = None
        if rng.random() < self.other_frame and clip.frames > 1:
            image = self._read(clip, int(rng.integers(clip.frames)))
        if image is None:  # the target itself (also when the other frame is unreadable)
            image = ((item["target"].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        item["driver"][:3] = torch.from_numpy(degrade_driver(image, rng)).permute(2, 0, 1)
        item["driver"][3] = 1.0
        return item


def degrade_driver(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An RGB uint8 mouth crop -> (S, S, 3) float32 in [-1, 1] that keeps the coarse shading (is the mouth open,
    are teeth or tongue showing) and loses what G must draw itself: a little moved, turned and scaled; blurred to
    an 8-16 px picture and back; colours and contrast changed (grey a quarter of the time); noise on top."""
    s = image.shape[0]
    angle, zoom = rng.uniform(-6, 6), rng.uniform(0.93, 1.07)
    m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, zoom)
    m[:, 2] += rng.uniform(-0.04, 0.04, 2) * s
    x = cv2.warpAffine(image, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    small = int(rng.choice([8, 10, 12, 16]))
    x = cv2.resize(cv2.resize(x, (small, small), interpolation=cv2.INTER_AREA), (s, s), interpolation=cv2.INTER_LINEAR)
    x = x.astype(np.float32) / 255.0
    if rng.random() < 0.25:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.7, 1.3) + mean  # contrast
    x = x * rng.uniform(0.75, 1.25, 3).astype(np.float32) + rng.uniform(-0.12, 0.12)  # colour and brightness
    x = x + rng.normal(0, 0.03, x.shape).astype(np.float32)
    return (np.clip(x, 0, 1) * 2 - 1).astype(np.float32)


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

