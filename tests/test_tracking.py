"""The tracker (objects counted once), line crossings and a classifier's label segments: numbers worked by hand.

Boxes are (left, top, width, height, score, label) in ratios; `square(cx, cy)` is a 0.2 x 0.2 box centred there.
Timestamps are 100 ms a frame (10 fps). A new track has no velocity yet, so its second box must overlap its first
by IoU >= 0.3: objects here move at most 0.05 of the frame a frame.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgelabels.data.boxes import iou_matrix
from edgelabels.errors import UserError
from edgelabels.runtime.tracking import LabelSegments, LineCounter, Tracker, assignment


def square(cx: float, cy: float, score: float = 0.9, label: str = "bee", side: float = 0.2):
    return (cx - side / 2, cy - side / 2, side, side, score, label)


def run(tracker: Tracker, frames: list[list]) -> list[dict]:
    """Each frame's boxes through the tracker -> per frame {box index: track id}."""
    return [{b.detection: b.track_id for b in tracker.update(boxes, 100 * i)} for i, boxes in enumerate(frames)]


# -- the assignment -----------------------------------------------------------------------------------------------

def test_assignment_takes_the_least_total_cost_where_greedy_would_not():
    # greedy takes the cheapest pair (0, 0) = 0.1 and is left with (1, 1) = 1.0: 1.1 in all; crossed: 0.2 + 0.3
    assert assignment([[0.1, 0.2], [0.3, 1.0]]) == [(0, 1), (1, 0)]


def test_assignment_of_a_tall_matrix_pairs_every_column_once():
    # three rows, two columns: row 2 takes column 0 (0.0), row 0 column 1 (0.1); row 1 (0.5, 0.5) is left out
    assert assignment([[0.4, 0.1], [0.5, 0.5], [0.0, 0.9]]) == [(0, 1), (2, 0)]
    assert assignment(np.zeros((0, 3))) == []


def test_assignment_matches_brute_force_on_random_matrices():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n, m = (int(v) for v in rng.integers(1, 6, 2))
        cost = np.round(rng.random((n, m)) * 4)  # many ties
        if n <= m:  # every row to one of the columns
            best = min(sum(cost[r, cols[r]] for r in range(n)) for cols in itertools.permutations(range(m), n))
        else:
            best = min(sum(cost[rows[c], c] for c in range(m)) for rows in itertools.permutations(range(n), m))
        pairs = assignment(cost)
        assert len(pairs) == min(n, m)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
        assert sum(cost[r, c] for r, c in pairs) == pytest.approx(best)


# -- the tracker --------------------------------------------------------------------------------------------------

def test_a_track_is_confirmed_after_min_hits_frames_and_ids_count_from_one():
    frames = [[square(0.2 + 0.02 * i, 0.5)] for i in range(4)]
    assert run(Tracker(min_hits=2), frames) == [{}, {0: 1}, {0: 1}, {0: 1}]
    assert run(Tracker(min_hits=3), frames) == [{}, {}, {0: 1}, {0: 1}]


def test_two_objects_crossing_paths_keep_their_ids():
    # A runs down-right, B up-right; their centres meet at (0.5, 0.5) in frame 8, and in frames 7-9 the detector
    # sees only A (B behind it): B's predicted box carries it through.
    def a(k):
        return square(0.1 + 0.05 * k, 0.2 + 0.0375 * k)

    def b(k):
        return square(0.1 + 0.05 * k, 0.8 - 0.0375 * k)

    frames = [[a(k)] if k in (7, 8, 9) else [a(k), b(k)] for k in range(17)]
    ids = run(Tracker(), frames)
    assert all(ids[k] == {0: 1, 1: 2} for k in [*range(1, 7), *range(10, 17)])
    assert ids[7] == ids[9] == {0: 1}


def test_two_objects_passing_through_each_other_on_one_line_keep_their_ids():
    frames = [[square(0.1 + 0.05 * k, 0.5), square(0.9 - 0.05 * k, 0.5)] for k in range(17)]  # meet at frame 8
    ids = run(Tracker(), frames)
    assert all(ids[k] == {0: 1, 1: 2} for k in range(1, 17) if k != 8)


def test_an_object_missed_for_5_frames_keeps_its_id():
    frames = [[] if 6 <= k <= 10 else [square(0.1 + 0.03 * k, 0.5)] for k in range(20)]
    ids = run(Tracker(), frames)
    assert [ids[k] for k in range(1, 20)] == [{0: 1}] * 5 + [{}] * 5 + [{0: 1}] * 9


def test_an_object_entering_the_frame_and_missed_at_once_keeps_its_id():
    # centre -0.1 + 0.04 k, cut off at the left edge until frame 5; seen in frames 1-7, missed 8-14, back at 15 as
    # [0.40, 0.60]: its right edge kept its speed (the centre of a box cut off moves at half the object's)
    def box(k):
        x1, x2 = max(-0.2 + 0.04 * k, 0.0), 0.04 * k  # centre -/+ 0.1, cut at 0
        return (x1, 0.4, x2 - x1, 0.2, 0.9, "bee")

    frames = [[] if k == 0 or 8 <= k <= 14 else [box(k)] for k in range(19)]
    ids = run(Tracker(), frames)
    assert [ids[k] for k in (2, 7, 15, 18)] == [{0: 1}] * 4


def test_an_object_leaving_the_frame_keeps_its_id_to_its_last_sliver():
    # centre 0.48 + 0.04 k, cut off at the right edge from frame 11; missed 13-14, last seen at 15 as [0.98, 1.0]:
    # predicted cut off at the edge as the detector sees it (uncut, [0.98, 1.1] would overlap it by IoU 0.17)
    def box(k):
        x1 = 0.38 + 0.04 * k
        return (x1, 0.4, min(x1 + 0.2, 1.0) - x1, 0.2, 0.9, "bee")

    frames = [[] if k in (13, 14) else [box(k)] for k in range(16)]
    tracker = Tracker()
    assert run(tracker, frames)[15] == {0: 1}
    assert tracker.summary()["Objects"]["bee"]["Tracks"] == [{"TrackId": 1, "Appeared": 0, "Left": 1500}]


def test_an_object_missed_for_longer_than_max_lost_frames_comes_back_as_a_new_object():
    frames = [[] if 6 <= k <= 10 else [square(0.1 + 0.03 * k, 0.5)] for k in range(20)]
    tracker = Tracker(max_lost_frames=3)
    ids = run(tracker, frames)
    assert ids[5] == {0: 1} and ids[11] == {} and ids[12] == {0: 2}  # frame 11 starts track 2, frame 12 confirms
    assert tracker.summary()["Objects"]["bee"] == {"Count": 2, "Tracks": [
        {"TrackId": 1, "Appeared": 0, "Left": 500}, {"TrackId": 2, "Appeared": 1100, "Left": 1900}]}


def test_a_false_positive_for_one_frame_never_becomes_a_track():
    # a true object throughout, and a spurious box in a different place every frame (never twice in one spot)
    frames = [[square(0.2 + 0.02 * k, 0.3), square(0.1 + 0.2 * (k % 4), 0.8)] for k in range(8)]
    tracker = Tracker()
    ids = run(tracker, frames)
    assert all(ids[k] == {0: 1} for k in range(1, 8))
    assert tracker.summary()["Objects"]["bee"]["Count"] == 1


def test_low_score_boxes_continue_a_track_but_never_start_one():
    frames = [[square(0.2 + 0.02 * k, 0.3, score=0.9 if k < 4 else 0.3), square(0.7, 0.7, score=0.3)]
              for k in range(8)]
    ids = run(Tracker(), frames)
    assert [ids[k] for k in range(1, 8)] == [{0: 1}] * 7  # the lone low box (index 1) never gets an id


def test_boxes_below_low_are_ignored():
    frames = [[square(0.2 + 0.02 * k, 0.3, score=0.9 if k < 4 else 0.05)] for k in range(8)]
    assert run(Tracker(), frames)[4:] == [{}] * 4


def test_a_box_matches_only_tracks_of_its_label():
    frames = [[square(0.5, 0.5, label="bee" if k < 4 else "wasp")] for k in range(6)]
    tracker = Tracker()
    assert run(tracker, frames) == [{}, {0: 1}, {0: 1}, {0: 1}, {}, {0: 2}]
    assert {label: o["Count"] for label, o in tracker.summary()["Objects"].items()} == {"bee": 1, "wasp": 1}


def test_n_objects_passing_one_after_another_count_n_with_when_each_appeared_and_left():
    # object j is seen in frames 10j .. 10j+7, moving right; lost tracks end after 2 frames unseen
    frames = [[square(0.2 + 0.03 * (k % 10), 0.5)] if k % 10 < 8 else [] for k in range(40)]
    tracker = Tracker(max_lost_frames=2)
    run(tracker, frames)
    assert tracker.summary() == {"Objects": {"bee": {"Count": 4, "Tracks": [
        {"TrackId": j + 1, "Appeared": 1000 * j, "Left": 1000 * j + 700} for j in range(4)]}}}


# -- line crossings -----------------------------------------------------------------------------------------------

def across(cx0: float, cx1: float, cy: float, frames: int = 20):
    """Centres from cx0 to cx1 at height cy in `frames` equal steps."""
    return [(cx0 + (cx1 - cx0) * k / (frames - 1), cy) for k in range(frames)]


def pass_objects(line: LineCounter, paths: list[list], label: str = "bee") -> dict:
    """Objects one after another, each along its path of centres, through a tracker with `line`."""
    tracker = Tracker(max_lost_frames=1, line=line)
    frames = []
    for path in paths:
        frames += [[square(x, y, label=label)] for x, y in path] + [[], [], []]
    run(tracker, frames)
    return tracker.summary()


def test_a_line_crossed_by_3_left_to_right_and_1_right_to_left_counts_in_3_out_1():
    # the line runs up the middle of the frame (bottom to top): its right is the frame's right, so left to right is In
    paths = [across(0.1, 0.9, 0.2), across(0.1, 0.9, 0.5), across(0.9, 0.1, 0.5), across(0.1, 0.9, 0.8)]
    summary = pass_objects(LineCounter(0.5, 1.0, 0.5, 0.0), paths)
    assert summary["Objects"]["bee"]["Count"] == 4
    assert summary["Crossings"] == {"bee": {"In": 3, "Out": 1}}


def test_a_line_drawn_the_other_way_swaps_in_and_out():
    paths = [across(0.1, 0.9, 0.2), across(0.1, 0.9, 0.5), across(0.9, 0.1, 0.5), across(0.1, 0.9, 0.8)]
    assert pass_objects(LineCounter(0.5, 0.0, 0.5, 1.0), paths)["Crossings"] == {"bee": {"In": 1, "Out": 3}}


def test_a_horizontal_line_drawn_left_to_right_counts_objects_moving_down_as_in():
    # facing right on the screen, the right-hand side is below the line
    down = [(0.5, 0.1 + 0.05 * k) for k in range(17)]
    assert pass_objects(LineCounter(0.0, 0.5, 1.0, 0.5), [down])["Crossings"] == {"bee": {"In": 1, "Out": 0}}


def test_passing_beyond_the_end_of_the_line_is_no_crossing():
    # the line covers the lower half only (y 0.5 to 1.0): the object at y 0.2 goes round it, the one at 0.8 crosses
    summary = pass_objects(LineCounter(0.5, 1.0, 0.5, 0.5), [across(0.1, 0.9, 0.2), across(0.1, 0.9, 0.8)])
    assert summary["Crossings"] == {"bee": {"In": 1, "Out": 0}}


def test_an_object_going_in_and_coming_back_counts_once_each_way():
    path = across(0.1, 0.9, 0.5) + across(0.9, 0.1, 0.5)[1:]
    assert pass_objects(LineCounter(0.5, 1.0, 0.5, 0.0), [path])["Crossings"] == {"bee": {"In": 1, "Out": 1}}


def test_a_centre_wobbling_on_the_line_counts_one_crossing():
    # 0.35 .. 0.45, then 0.504 / 0.496 (within the 0.01 margin, flipping side each frame), 0.55 .. 0.65
    path = [(0.35, 0.5), (0.4, 0.5), (0.45, 0.5)] + [(0.496 if k % 2 else 0.504, 0.5) for k in range(6)] + \
        [(0.55, 0.5), (0.6, 0.5), (0.65, 0.5)]
    assert pass_objects(LineCounter(0.5, 1.0, 0.5, 0.0), [path])["Crossings"] == {"bee": {"In": 1, "Out": 0}}


def test_a_line_whose_ends_are_one_point_is_refused():
    with pytest.raises(UserError, match="same point"):
        LineCounter(0.5, 0.5, 0.5, 0.5)


# -- label segments -----------------------------------------------------------------------------------------------

def segments(labels: list, window: int = 5, min_frames: int = 3) -> list[dict]:
    smoother = LabelSegments(window=window, min_frames=min_frames)
    for i, label in enumerate(labels):
        smoother.update(label, 100 * i)
    return smoother.segments()


def test_label_segments_follow_the_frames_not_the_smoothing_delay():
    # B becomes the majority at frame 7 and stays it to frame 9 (3 frames): the switch is dated back to frame 5
    assert segments(["A"] * 5 + ["B"] * 5) == [{"Name": "A", "Start": 0, "End": 400},
                                               {"Name": "B", "Start": 500, "End": 900}]


def test_a_one_frame_flicker_starts_no_segment():
    assert segments(["A"] * 4 + ["B"] + ["A"] * 3 + [None] + ["A"] * 2) == [{"Name": "A", "Start": 0, "End": 1000}]


def test_a_stretch_with_no_label_splits_segments():
    # frames 4-9 no label: None is the majority from frame 6, for 3 frames at 8 -> A ends at frame 3; A again from
    # frame 10, the majority from 12, for 3 frames at 14
    assert segments(["A"] * 4 + [None] * 6 + ["A"] * 6) == [{"Name": "A", "Start": 0, "End": 300},
                                                            {"Name": "A", "Start": 1000, "End": 1500}]


def test_a_change_among_flickers_is_dated_where_the_new_label_takes_over():
    # frames 0-4 A, 5 B, 6 A, 7-8 B, 9 A, 10-13 B: B is the majority at frames 8, 9, 10; in the window at frame 10
    # (frames 6-10: A B B A B) the split after frame 6 leaves 1 A before and 3 B after, more than any other
    assert segments(list("AAAAABABBABBBB")) == [{"Name": "A", "Start": 0, "End": 600},
                                                {"Name": "B", "Start": 700, "End": 1300}]


def test_a_change_the_video_ends_on_is_kept():
    # B holds frames 9-11, 3 of the last 5, but has been the majority for 2 frames only when the frames stop
    assert segments(list("AAABBBAAABBB")) == [
        {"Name": "A", "Start": 0, "End": 200}, {"Name": "B", "Start": 300, "End": 500},
        {"Name": "A", "Start": 600, "End": 800}, {"Name": "B", "Start": 900, "End": 1100}]
    assert segments(list("AAAAAAABB")) == [{"Name": "A", "Start": 0, "End": 600}]  # 2 frames of B: a flicker


def test_no_frames_or_only_no_label_give_no_segments():
    assert segments([]) == []
    assert segments([None] * 6) == []


# -- the target: a video of known moving objects ------------------------------------------------------------------

def test_objects_in_a_video_of_known_tracks_are_counted_once_and_their_crossings_match(tmp_path):
    """moving_objects_video's ground truth, as a jittery detector would see it: each box's edges moved by up to
    3 px, 10% of detections dropped, 10% scored low (0.2-0.45, what ByteTrack's second association recovers),
    and one-frame spurious boxes; through the Tracker with the line up the middle of the frame (left to right is
    In). The two red squares cross at the line itself, in one spot, at 1.5 s."""
    from helpers.video import Track, moving_objects_video

    tracks = [
        Track("red", (-0.05, 0.25), (1.05, 0.75), appear_s=0.0, leave_s=3.0),  # In
        Track("red", (-0.05, 0.75), (1.05, 0.25), appear_s=0.0, leave_s=3.0),  # In, crossing the first
        Track("green", (1.05, 0.5), (-0.05, 0.5), appear_s=1.0, leave_s=4.0),  # Out
        Track("blue", (0.2, 0.9), (0.4, 0.9), appear_s=0.5, leave_s=3.5),  # never reaches the line
        Track("yellow", (0.3, 0.1), (0.7, 0.1), appear_s=2.0, leave_s=4.5),  # In
    ]
    truth = moving_objects_video(tmp_path / "objects.mp4", tracks, size=(320, 240), fps=10, seconds=5.0)
    assert (tmp_path / "objects.mp4").stat().st_size > 0
    rng = np.random.default_rng(30)
    tracker = Tracker(line=LineCounter(0.5, 1.0, 0.5, 0.0))
    objects_of: dict[int, set] = {}  # track id -> the objects its boxes came from, where they can be told apart
    for k, frame in enumerate(truth):
        boxes, sources = [], []
        for box in frame:
            if rng.random() < 0.1:
                continue
            dx0, dx1 = rng.uniform(-3, 3, 2) / 320
            dy0, dy1 = rng.uniform(-3, 3, 2) / 240
            score = rng.uniform(0.2, 0.45) if rng.random() < 0.1 else rng.uniform(0.6, 0.95)
            boxes.append((box.left + dx0, box.top + dy0, box.width - dx0 + dx1, box.height - dy0 + dy1, score,
                          box.label))
            sources.append(box.id)
        if k % 10 == 3:  # a spurious box once a second, somewhere new, clear of the objects (background)
            spurious = (rng.uniform(0, 0.85), rng.uniform(0, 0.85), 0.12, 0.16)
            while frame and iou_matrix([spurious], [b[2:] for b in frame]).max() > 0:
                spurious = (rng.uniform(0, 0.85), rng.uniform(0, 0.85), 0.12, 0.16)
            boxes.append((*spurious, 0.7, "red"))
            sources.append(None)
        # where the two reds are (nearly) one box, no tracker can tell which is which: only the ids after count
        one_box = len(frame) > 1 and iou_matrix([b[2:] for b in frame], [b[2:] for b in frame])[0, 1] >= 0.8
        for tracked in tracker.update(boxes, 100 * k):
            if one_box and sources[tracked.detection] in (0, 1):
                continue
            objects_of.setdefault(tracked.track_id, set()).add(sources[tracked.detection])
    assert sorted(objects_of.values(), key=min) == [{0}, {1}, {2}, {3}, {4}]  # one track per object, never mixed
    summary = tracker.summary()
    assert {label: o["Count"] for label, o in summary["Objects"].items()} == \
        {"blue": 1, "green": 1, "red": 2, "yellow": 1}
    assert summary["Crossings"] == {"blue": {"In": 0, "Out": 0}, "green": {"In": 0, "Out": 1},
                                    "red": {"In": 2, "Out": 0}, "yellow": {"In": 1, "Out": 0}}
    # Appeared and Left: the object's first and last frames, or up to 0.6 s inside them: a sliver entering the frame,
    # a dropped box or a low-scored one delay a start (an unconfirmed track ends at its first miss, as ByteTrack's)
    for label, first_s, last_s in [("green", 1.0, 3.9), ("blue", 0.5, 3.4), ("yellow", 2.0, 4.4)]:
        (seen,) = summary["Objects"][label]["Tracks"]
        assert 1000 * first_s <= seen["Appeared"] <= 1000 * first_s + 600
        assert 1000 * last_s - 600 <= seen["Left"] <= 1000 * last_s
