"""Objects counted once in a video: boxes tracked across frames, line crossings, a classifier's label segments.

Tracker: ByteTrack's association (Zhang et al. 2022, "ByteTrack: Multi-Object Tracking by Associating Every
Detection Box"; ifzhang/ByteTrack yolox/tracker/byte_tracker.py) with a constant-velocity prediction in place of
its Kalman filter. Each frame:
1. every track predicts its box: each edge on the least-squares line through its last positions (a constant
   velocity fitted to up to 8 frames: steadier than the last step under a jittery detector; per edge rather than
   centre and size, so a box growing as its object enters the frame is followed), clipped to the frame;
2. high-score boxes (>= high) go to the confirmed tracks, seen or lost, by IoU with an optimal assignment;
3. low-score boxes (low..high: often the occluded or blurred object) go to the confirmed tracks still unmatched
   that were seen last frame, at a stricter IoU (ByteTrack's 0.5: a low box is more often background);
4. the high boxes left go to the unconfirmed tracks; an unconfirmed track unmatched is dropped (a one-frame
   false positive never becomes an object); the high boxes still left start tracks;
5. a confirmed track unseen for more than max_lost_frames frames has left.
A box matches only tracks of its label. A track is confirmed once matched in min_hits consecutive frames; only
then it gets its TrackId (1, 2, ... in the order confirmed, so ids count objects). Scores are 0-1 (a
CustomLabels entry's Confidence / 100); boxes are (left, top, width, height) ratios of the frame.
Frames are counted in update() calls, not milliseconds: velocity is per sampled frame, so a regular `--every`
sampling keeps it right; timestamps only say when each object appeared and left.

LineCounter: a directed line p1 -> p2 in ratios; a confirmed track's centre passing from its left to its right
(as seen on the screen) counts In, the other way Out. A line drawn from the bottom to the top of the frame
counts objects moving left to right as In.

LabelSegments: a classifier's top label per frame, smoothed, as segments with a start and an end.
numpy only (never TensorFlow or Keras).
"""

from __future__ import annotations

import copy
from collections import Counter, deque
from typing import NamedTuple

import numpy as np

from edgelabels.data.boxes import iou_matrix
from edgelabels.errors import UserError

HISTORY = 8  # boxes a track keeps to fit its velocity
LOW_MATCH_IOU = 0.5  # ByteTrack's second association threshold (IoU >= 0.5)
FORBIDDEN = 1e6  # the cost of a pair below its IoU threshold (never chosen while a pair above it remains)
LINE_MARGIN = 0.01  # a centre this close to the line (ratios) keeps its former side: jitter on the line counts nothing


class TrackedBox(NamedTuple):
    track_id: int
    label: object
    left: float
    top: float
    width: float
    height: float
    score: float
    detection: int  # its index in the boxes given to update() this frame


def assignment(cost) -> list[tuple[int, int]]:
    """Rows paired with columns, each at most once, min(rows, columns) pairs of least total cost: the Hungarian
    method with potentials (Kuhn-Munkres; shortest augmenting paths, O(n^2 m)), vectorised over columns."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.size == 0:
        return []
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    n, m = cost.shape
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=int)  # owner[j]: the row (1-based) holding column j; column 0 is the root
    way = np.zeros(m + 1, dtype=int)
    for row in range(1, n + 1):
        owner[0], j0 = row, 0
        minv, used = np.full(m + 1, np.inf), np.zeros(m + 1, dtype=bool)
        while True:  # grow a tree of tight edges until it reaches a free column
            used[j0] = True
            i0 = owner[j0]
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            better = ~used[1:] & (reduced < minv[1:])
            minv[1:][better], way[1:][better] = reduced[better], j0
            candidates = np.where(used[1:], np.inf, minv[1:])
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[owner[used]] += delta
            v[used] -= delta
            minv[~used] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:  # flip the path back to the root
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    pairs = [(int(owner[j]) - 1, j - 1) for j in range(1, m + 1) if owner[j]]
    return sorted((c, r) for r, c in pairs) if transposed else sorted(pairs)


def match(track_boxes, track_labels, boxes, labels, min_iou: float) -> list[tuple[int, int]]:
    """(track, box) pairs of the same label and IoU >= min_iou, the most boxes matched at the highest total IoU.
    Solved per group of tracks and boxes linked by such pairs: most groups are one track and one box, and the
    assignment's cost grows with the cube of its size."""
    if not len(track_boxes) or not len(boxes):
        return []
    iou = iou_matrix(track_boxes, boxes)
    iou[np.asarray(track_labels, dtype=object)[:, None] != np.asarray(labels, dtype=object)[None, :]] = 0.0
    allowed = iou >= min_iou
    pairs = []
    for rows, cols in linked_groups(allowed):
        cost = np.where(allowed[np.ix_(rows, cols)], 1.0 - iou[np.ix_(rows, cols)], FORBIDDEN)
        pairs += [(rows[r], cols[c]) for r, c in assignment(cost)]
    return sorted((t, b) for t, b in pairs if allowed[t, b])


def linked_groups(allowed: np.ndarray) -> list[tuple[list[int], list[int]]]:
    """The connected groups (rows, columns) of a bipartite graph given as a boolean matrix; lone rows or columns
    (no edge) belong to none."""
    groups, seen_rows, seen_cols = [], set(), set()
    for start in np.flatnonzero(allowed.any(axis=1)):
        if start in seen_rows:
            continue
        rows, cols, todo = [int(start)], [], [int(start)]
        seen_rows.add(start)
        while todo:
            for c in np.flatnonzero(allowed[todo.pop()]):
                if c not in seen_cols:
                    seen_cols.add(c)
                    cols.append(int(c))
                    for r in np.flatnonzero(allowed[:, c]):
                        if r not in seen_rows:
                            seen_rows.add(r)
                            rows.append(int(r))
                            todo.append(int(r))
        groups.append((rows, cols))
    return groups


class Track:
    """One object's boxes over time; its TrackId once confirmed (None before)."""

    def __init__(self, label, timestamp_ms: int):
        self.label, self.hits, self.track_id = label, 0, None
        self.history: deque = deque(maxlen=HISTORY)  # (frame, box)
        self.appeared_ms = timestamp_ms

    def observe(self, box, frame: int, timestamp_ms: int) -> None:
        self.history.append((frame, np.asarray(box, dtype=np.float64)))
        self.hits, self.last_frame, self.left_ms = self.hits + 1, frame, timestamp_ms
        self.intercept, self.slope = fit_edges(self.history)

    def predict(self, frame: int) -> np.ndarray:
        """Its box in `frame` (see fit_edges), clipped to the frame as the detector's boxes are: an object leaving
        is predicted cut off, as it will be seen."""
        x1, y1, x2, y2 = np.clip(self.intercept + self.slope * frame, 0.0, 1.0)
        return np.array([x1, y1, max(x2 - x1, 0.0), max(y2 - y1, 0.0)])


def fit_edges(history) -> tuple[np.ndarray, np.ndarray]:
    """Each edge (x1, y1, x2, y2) of a track's last boxes on its least-squares line over frames: (intercepts,
    slopes); one box: no velocity yet."""
    frames = np.array([f for f, _ in history], dtype=np.float64)[:, None]
    boxes = np.array([b for _, b in history])
    edges = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    df = frames - frames.mean()
    variance = float((df ** 2).sum())
    slope = (df * (edges - edges.mean(axis=0))).sum(axis=0) / variance if variance > 0 else np.zeros(4)
    return edges.mean(axis=0) - slope * frames.mean(), slope


class LineCounter:
    """Crossings of the directed line (x1, y1) -> (x2, y2), in ratios of the frame, by tracked centres."""

    def __init__(self, x1: float, y1: float, x2: float, y2: float, margin: float = LINE_MARGIN):
        self.p1, self.p2 = np.array([x1, y1], dtype=np.float64), np.array([x2, y2], dtype=np.float64)
        self.length = float(np.hypot(*(self.p2 - self.p1)))
        if self.length == 0:
            raise UserError(f"line {x1},{y1},{x2},{y2}: its two ends are the same point")
        self.margin = margin
        self.sides: dict = {}  # track id -> (side: -1 left, +1 right, centre where last seen on that side)
        self.counts: dict = {}  # label -> {"In": n, "Out": n}

    def side(self, centre) -> int:
        """+1 right of the line as seen on the screen (y grows downwards), -1 left, 0 within the margin."""
        d, r = self.p2 - self.p1, np.asarray(centre, dtype=np.float64) - self.p1
        distance = (d[0] * r[1] - d[1] * r[0]) / self.length
        return 0 if abs(distance) < self.margin else int(np.sign(distance))

    def update(self, tracked: list[TrackedBox]) -> None:
        for box in tracked:
            counts = self.counts.setdefault(box.label, {"In": 0, "Out": 0})
            centre = np.array([box.left + box.width / 2, box.top + box.height / 2])
            side = self.side(centre)
            if side == 0:
                continue
            before = self.sides.get(box.track_id)
            if before is not None and before[0] != side and self._within(before[1], centre):
                counts["In" if side > 0 else "Out"] += 1
            self.sides[box.track_id] = (side, centre)

    def _within(self, a, b) -> bool:
        """Whether the path a -> b meets the line between its two ends (passing beyond an end is no crossing)."""
        d, e = self.p2 - self.p1, b - a
        denominator = e[0] * d[1] - e[1] * d[0]
        if denominator == 0:
            return False
        along = ((a[0] - self.p1[0]) * e[1] - (a[1] - self.p1[1]) * e[0]) / -denominator
        return 0.0 <= along <= 1.0


class Tracker:
    """ByteTrack-style multi-object tracker (see the module's docstring); `update` once per sampled frame."""

    def __init__(self, high: float = 0.5, low: float = 0.1, match_iou: float = 0.3, max_lost_frames: int = 30,
                 min_hits: int = 2, line: LineCounter | None = None):
        self.high, self.low, self.match_iou = high, low, match_iou
        self.max_lost_frames, self.min_hits, self.line = max_lost_frames, min_hits, line
        self.frame, self.next_id = -1, 1
        self.tracks: list[Track] = []  # live: confirmed (seen or lost) and unconfirmed
        self.finished: list[Track] = []  # confirmed tracks that left

    def update(self, boxes, timestamp_ms: int) -> list[TrackedBox]:
        """boxes: (left, top, width, height, score, label) in ratios and 0-1 -> the confirmed tracks seen in this
        frame, each with the box it matched (`detection`: that box's index in `boxes`). Boxes below `low` are
        ignored."""
        self.frame += 1
        boxes = [tuple(b) for b in boxes]
        rects = np.array([b[:4] for b in boxes], dtype=np.float64).reshape(-1, 4)
        high = [i for i, b in enumerate(boxes) if b[4] >= self.high]
        low = [i for i, b in enumerate(boxes) if self.low <= b[4] < self.high]
        confirmed = [t for t in self.tracks if t.track_id is not None]
        unconfirmed = [t for t in self.tracks if t.track_id is None]
        matched: dict[int, Track] = {}  # box index -> track

        def associate(tracks: list[Track], candidates: list[int], min_iou: float) -> list[Track]:
            """Match, record in `matched`; the tracks left unmatched."""
            predicted = [t.predict(self.frame) for t in tracks]
            pairs = match(predicted, [t.label for t in tracks], rects[candidates], [boxes[i][5] for i in candidates],
                          min_iou)
            matched.update((candidates[c], tracks[t]) for t, c in pairs)
            return [t for i, t in enumerate(tracks) if i not in {t for t, _ in pairs}]

        unmatched = associate(confirmed, high, self.match_iou)
        associate([t for t in unmatched if t.last_frame == self.frame - 1], low, LOW_MATCH_IOU)
        dropped = associate(unconfirmed, [i for i in high if i not in matched], self.match_iou)
        for i in high:
            if i not in matched:
                matched[i] = Track(boxes[i][5], timestamp_ms)
                self.tracks.append(matched[i])
        for i, track in matched.items():
            track.observe(rects[i], self.frame, timestamp_ms)
            if track.track_id is None and track.hits >= self.min_hits:
                track.track_id, self.next_id = self.next_id, self.next_id + 1
        gone = [t for t in confirmed if self.frame - t.last_frame > self.max_lost_frames]
        self.finished += gone
        self.tracks = [t for t in self.tracks if t not in gone and t not in dropped]
        tracked = sorted((TrackedBox(t.track_id, t.label, *map(float, rects[i]), float(boxes[i][4]), i)
                          for i, t in matched.items() if t.track_id is not None), key=lambda b: b.track_id)
        if self.line is not None:
            self.line.update(tracked)
        return tracked

    def summary(self) -> dict:
        """{"Objects": {label: {"Count", "Tracks": [{"TrackId", "Appeared", "Left"}]}}, and with a line
        "Crossings": {label: {"In", "Out"}}}; times in milliseconds, Left the last frame an object was seen."""
        objects: dict = {}
        every = self.finished + [t for t in self.tracks if t.track_id is not None]
        for track in sorted(every, key=lambda t: t.track_id):
            entry = objects.setdefault(track.label, {"Count": 0, "Tracks": []})
            entry["Count"] += 1
            entry["Tracks"].append({"TrackId": track.track_id, "Appeared": track.appeared_ms, "Left": track.left_ms})
        out = {"Objects": {label: objects[label] for label in sorted(objects, key=str)}}
        if self.line is not None:
            out["Crossings"] = {label: dict(self.line.counts.get(label, {"In": 0, "Out": 0}))
                                for label in sorted(set(objects) | set(self.line.counts), key=str)}
        return out


class LabelSegments:
    """A classifier's top label per frame (None: no label) -> segments [{"Name", "Start", "End"}] in milliseconds.

    Smoothing: each frame's majority label over the last `window` frames (a tie keeps the current label, else
    goes to the most recent of the tied). Hysteresis: the current label changes only after another label has been
    the majority for `min_frames` frames in a row, so a flicker shorter than that starts no segment. A change is
    dated back to where it happened in the window: the split that leaves the most frames of the old label before it
    and of the new one after it (the latest such split); the old segment ends at its last frame before the split,
    the new one starts at its first frame after it. Segments follow the frames, not the smoothing's delay.
    """

    def __init__(self, window: int = 5, min_frames: int = 3):
        self.window: deque = deque(maxlen=window)  # (label, timestamp_ms)
        self.min_frames = min_frames
        self.current, self.start_ms = None, None
        self.last_ms: dict = {}  # label -> its last frame's time
        self.left_window: dict = {}  # label -> the time of its last frame that has left the window
        self.candidate, self.run = None, 0
        self.closed: list[dict] = []

    def update(self, label, timestamp_ms: int) -> None:
        if len(self.window) == self.window.maxlen:
            name, t = self.window[0]
            self.left_window[name] = t
        self.window.append((label, timestamp_ms))
        votes = Counter(name for name, _ in self.window)
        top = max(votes.values())
        tied = {name for name, n in votes.items() if n == top}
        majority = self.current if self.current in tied else next(n for n, _ in reversed(self.window) if n in tied)
        if majority == self.current:
            self.candidate, self.run = None, 0
        else:
            self.run = self.run + 1 if majority == self.candidate else 1
            self.candidate = majority
        if self.run >= self.min_frames:
            self._switch(self.candidate)
        self.last_ms[label] = timestamp_ms

    def _switch(self, label) -> None:
        names = [name for name, _ in self.window]
        times = [t for _, t in self.window]
        last_new = max(i for i, name in enumerate(names) if name == label)
        split = max(range(last_new + 1), key=lambda s: (names[:s].count(self.current) + names[s:].count(label), s))
        if self.current is not None:
            before = [t for name, t in zip(names[:split], times[:split]) if name == self.current]
            end = before[-1] if before else self.left_window.get(self.current, self.start_ms)
            self.closed.append({"Name": self.current, "Start": self.start_ms, "End": max(end, self.start_ms)})
        start = next(t for name, t in zip(names[split:], times[split:]) if name == label)
        self.current, self.start_ms, self.candidate, self.run = label, start, None, 0

    def segments(self) -> list[dict]:
        """The segments so far, the current one ending at its label's last frame. A change still waiting for its
        min_frames when the frames stop is taken when its label holds min_frames frames of the window (the video
        ended, not the label)."""
        state = self
        if self.candidate is not None and [n for n, _ in self.window].count(self.candidate) >= self.min_frames:
            state = copy.deepcopy(self)
            state._switch(self.candidate)
        if state.current is None:
            return list(state.closed)
        return state.closed + [{"Name": state.current, "Start": state.start_ms, "End": state.last_ms[state.current]}]
