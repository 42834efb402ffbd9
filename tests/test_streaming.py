"""`decode.streaming` (issue 13): one pass. Decode reads only the headers; extract decodes and
embeds each video once, keeps what a truncated file gives and names it; the features are those
of the frame-shard path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ConfigError
from pipeline.config.loading import load_config
from pipeline.runner import Results, run_front_end
from storage.features import FeatureStore

STREAMING = ["decode.keep_frames=false", "decode.streaming=true"]


def test_one_pass_gives_the_frame_path_features_and_names_the_truncated_video(
    tiny_run: Results, fresh_root: Callable[[str], Path]
) -> None:
    root = fresh_root("streaming")
    manifests = run_front_end(load_config("tiny", STREAMING), "youcook2", "extract", root)
    decode, extract = manifests["decode"].info, manifests["extract"].info
    framed = tiny_run["youcook2"]
    truncated = [v for v, why in framed["decode"].info.bad_videos.items() if "truncated" in why]
    assert len(truncated) == 1  # the tiny set's cut-off file
    assert decode.streaming and decode.status_counts == {"probed": 5, "failed": 1}
    assert decode.bad_videos.keys() == {
        v for v, why in framed["decode"].info.bad_videos.items() if why.startswith("failed")
    }
    assert extract.ended_early == {truncated[0]: "decoded 6 of 11 seconds"}
    assert extract.seconds == framed["extract"].info.seconds

    one = FeatureStore(Path(manifests["extract"].output("index")))
    other = FeatureStore(Path(framed["extract"].output("index")))
    assert sorted(one.video_ids) == sorted(other.video_ids)
    for video_id in one.video_ids:
        streamed, from_frames = one.features(video_id), other.features(video_id)
        assert streamed.shape == from_frames.shape, video_id
        np.testing.assert_allclose(streamed, from_frames, atol=2e-3, err_msg=video_id)


def test_streaming_needs_keep_frames_off() -> None:
    with pytest.raises(ConfigError, match=r"decode\.streaming needs decode\.keep_frames=false"):
        load_config("tiny", ["decode.streaming=true"])
