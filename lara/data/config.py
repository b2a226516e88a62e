"""Configuration of the data core (`lara.data.EpisodeDataset`): which sources to read and how to cut them."""

from __future__ import annotations

from pathlib import Path

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from .episodes import SOURCES

SAMPLE_KEYS = {"lam_frames", "lam_valid", "image", "instruction", "episode_index", "frame_index", "actions",
               "action_mask", "lam_actions", "lam_action_mask", "proprio"}


class SourceSpec(BaseModel):
    """One data source of a mixture: where it is, which reader, and how often it is drawn."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    path: Path = Field(description="A LIBERO HDF5 file or folder, a LeRobot dataset folder, or a video file/folder.")
    format: str | None = Field(
        None, description="The reader: libero_hdf5, lerobot, video (lara.data.episodes.SOURCES), or the dotted name "
        "of a module holding a reader's `options` and `open_source` (e.g. my_lab.readers.rlds); None recognises it "
        "from what is on disk.",
    )
    weight: float = Field(
        1.0, gt=0, description="Mixture weight, per sample: an epoch draws a source's samples `weight` times as "
        "often as their number alone would (2: twice, 0.5: half), repeating or subsampling it window by window.",
    )
    labels: Path | None = Field(
        None, description="Video sources: a Something-Something-v2 style labels JSON (a list of {id, label, "
        "template}; id = the video's file stem) giving each video's instruction. Without it a sidecar "
        "<stem>.txt next to a video is its instruction, else the instruction is empty.",
    )
    labelled_per_task: int | None = Field(
        None, ge=1, description="Label-scarce split of this source: its episodes grouped by task (instruction) in "
        "the reader's order, each task's shuffled with split_seed, the first K of each task 'labelled' (they keep "
        "their actions) and the rest 'unlabelled' (frames only). `episodes` says which side this entry reads; the "
        "episode ids of each side go to RUN/data_split.json. None: no split.",
    )
    episodes: Literal["all", "labelled", "unlabelled"] = Field(
        "all", description="Which episodes of the source this entry reads: 'all' (no split), or a side of the "
        "labelled_per_task split: 'labelled' (K per task, with actions) or 'unlabelled' (the others, opened "
        "action-free: their actions are never read, so no statistic, sample or lam_actions comes from them).",
    )
    split_seed: int = Field(0, ge=0, description="Seed of the per-task shuffle of the labelled_per_task split.")

    @field_validator("format")
    @classmethod
    def _known_reader(cls, value):
        if value is not None and value not in SOURCES and "." not in value:
            raise ValueError(f"format {value!r}: expected one of {sorted(SOURCES)} or a reader module's dotted name")
        return value

    @model_validator(mode="after")
    def _side_of_a_split(self):
        if self.labelled_per_task is None and self.episodes != "all":
            raise ValueError(f"{self.path}: episodes='{self.episodes}' reads one side of a label-scarce split; set "
                             "labelled_per_task (K labelled episodes per task) too, or episodes='all'")
        if self.labelled_per_task is not None and self.episodes == "all":
            raise ValueError(f"{self.path}: labelled_per_task={self.labelled_per_task} splits the source; say which "
                             "side this entry reads: episodes='labelled' or episodes='unlabelled'")
        return self


def _entry_kind(value) -> str:
    return "spec" if isinstance(value, (dict, SourceSpec)) else "path"


# a data source as configs take it: a path, or a {path, ...} SourceSpec entry (errors name the entry's own fields)
SourceEntry = Annotated[Annotated[Path, Tag("path")] | Annotated[SourceSpec, Tag("spec")], Discriminator(_entry_kind)]


class LiberoDataConfig(BaseModel):
    """Which data sources to read and how to cut them into LARA training samples."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every float finite

    paths: list[SourceEntry] = Field(
        description="Data sources: paths (LIBERO HDF5 files or folders of *.hdf5/*.h5, not recursive; LeRobot "
        "dataset folders; video files or folders, recursive), or {path, format, weight, labels, labelled_per_task, "
        "episodes, split_seed} entries for an explicit reader, a mixture weight or one side of a label-scarce "
        "split. A single path may be given instead of a list.",
    )
    camera: str = Field(
        "agentview_rgb",
        description="obs key of the camera giving `image` and `lam_frames` (e.g. agentview_rgb, eye_in_hand_rgb).",
    )
    extra_cameras: list[str] = Field(
        default_factory=list,
        description="More obs camera keys to return at time t, each under its own key (e.g. "
        "['eye_in_hand_rgb'] adds sample['eye_in_hand_rgb'] uint8 [3, H, W]) for multi-view policies.",
    )
    frame_gap: int = Field(
        9, ge=1,
        description="k: the LAM sees (o_t, o_{t+k}) and `lam_actions` holds the k actions a_t..a_{t+k-1}. "
        "LARA release: 9 for pi0.5 on LIBERO (action horizon 10), 15 for GR00T.",
    )
    action_horizon: int = Field(
        10, ge=1, description="H: length of the `actions` chunk a_t..a_{t+H-1} the policy is trained to predict.",
    )
    drop_incomplete: bool = Field(
        False,
        description="Drop samples whose future frame o_{t+k} lies past the episode end. False keeps them "
        "with the last frame as the future frame and `lam_valid` = False.",
    )
    frame_gap_s: float | None = Field(
        None, gt=0,
        description="The frame gap in seconds instead of frames: k = round(frame_gap_s * fps) with each "
        "episode's own fps (videos, LeRobot). Overrides frame_gap; every source must know its fps.",
    )
    fps: float | None = Field(
        None, gt=0, description="Video sources: resample every video to this frame rate (nearest frame); "
        "None keeps each video's own rate.",
    )
    window: int = Field(
        32, ge=1,
        description="Video sources: frames decoded at once. Samples are shuffled window by window (windows in "
        "random order, pairs in random order within a window), so one decode serves many (o_t, o_{t+k}) pairs.",
    )
    crop: bool = Field(
        False, description="Centre-crop each frame to image_size's aspect ratio before resizing (False: "
        "stretch). For videos whose aspect differs from the LAM's input.",
    )
    image_size: int | tuple[int, int] | None = Field(
        None,
        description="Resize frames to this size (int = square, or (height, width)) with antialiased "
        "bilinear interpolation; None keeps the stored size.",
    )
    action_free: bool = Field(
        False,
        description="Frames only (video pre-training): no actions, proprio or statistics are read, so files "
        "without `actions` work. Samples then hold lam_frames, lam_valid, image, instruction and indices.",
    )
    statistics_path: Path | None = Field(
        None,
        description="dataset_statistics.json (or its directory) to normalise actions with, e.g. the one a "
        "VLA was trained with. None: compute q01/q99/mean/std from the files being read.",
    )
    dataset_name: str = Field(
        "libero",
        description="Key of these statistics in dataset_statistics.json (OpenVLA's `unnorm_key`).",
    )
    skip_bad_files: bool = Field(
        False,
        description="Skip files that cannot be read (corrupt, truncated, missing keys) with one warning "
        "listing them, instead of raising. An error is still raised when no readable file is left.",
    )

    @property
    def sources(self) -> list[SourceSpec]:
        """`paths` as SourceSpec entries (a plain path is a spec with its format recognised from disk; dicts
        can arrive unvalidated through `model_copy(update=...)`)."""
        return [p if isinstance(p, SourceSpec) else SourceSpec.model_validate(p) if isinstance(p, dict)
                else SourceSpec(path=p) for p in self.paths]

    def actions_unread(self, spec: SourceSpec) -> bool:
        """Whether a source's actions stay unread: `action_free`, or the unlabelled side of a label-scarce split
        (an unlabelled action is never read, so it cannot leak into training)."""
        return self.action_free or spec.episodes == "unlabelled"

    @field_validator("paths", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, value):
        return [value] if isinstance(value, (str, Path, dict, SourceSpec)) else value

    @field_validator("paths")
    @classmethod
    def _not_empty(cls, value):
        if not value:
            raise ValueError("paths is empty; give at least one data source (LIBERO HDF5, LeRobot or video).")
        return value

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, value):
        sizes = (value,) if isinstance(value, int) else (value or ())
        if any(size < 1 for size in sizes):
            raise ValueError(f"image_size must be positive, got {value}.")
        return value

    @model_validator(mode="after")
    def _distinct_cameras(self):
        cameras = [self.camera, *self.extra_cameras]
        if len(set(cameras)) != len(cameras):
            raise ValueError(f"camera and extra_cameras must be distinct, got {cameras}.")
        clash = SAMPLE_KEYS & set(self.extra_cameras)
        if clash:
            raise ValueError(f"extra_cameras {sorted(clash)} would overwrite sample keys of the same name.")
        return self
