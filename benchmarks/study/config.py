"""What a study is: a preset, its data, the variants and seeds of the grid, and the evaluation protocol.

Given as `lara study` options or as a YAML study file (the same fields, headed by the command that runs it);
options given beside a file override its fields. Validated before anything runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lara.data.config import SourceEntry, SourceSpec
from lara.errors import InputError

BUILT_IN = {"baseline": ["baseline=true"], "lara": []}  # always run: the recipe without LARA, and as it is
OWNED_KEYS = ("data.paths", "train.seed", "output_dir")  # set per cell by the study itself
CELL_KEYS = ("train.seed", "output_dir")  # of those, what a variant may not set either (it may train on other data)
SHARED_ONLY = ("baseline",)  # a variant may set it (e.g. the baseline recipe after another first stage); --set may not
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a variant names a folder


def split_top_level(text: str) -> list[str]:
    """'a=1,b=[x,y],c={w: 1, l: 2}' -> ['a=1', 'b=[x,y]', 'c={w: 1, l: 2}']: commas inside brackets stay."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{("
        depth -= char in "]})"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


class FirstStage(BaseModel):
    """A training run before a variant's own, in the same cell: its final VLA is where the variant's run starts."""

    model_config = ConfigDict(extra="forbid")

    preset: str = Field(description="The `lara train` preset of the first stage, e.g. latent_pretrain_token_vla.")
    overrides: list[str] = Field(
        default_factory=list, description="Its `key=value` overrides, after the study's shared ones (`--set`). "
        "`data.paths` may be given here (e.g. action-free videos); else the stage trains on the study's data.",
    )


class StagedVariant(BaseModel):
    """A two-stage variant: `first` runs into <cell>/first, then the study's preset with `overrides` and
    `model.path=<cell>/first/final/vla` (e.g. latent-action pre-training, then post-training from it)."""

    model_config = ConfigDict(extra="forbid")

    first: FirstStage = Field(description="The run before the variant's own.")
    continue_lam: bool = Field(
        False, description="The variant's run also continues the first stage's LAM: refine.lam_from="
        "<cell>/first/final/lara (final/lam after latent_pretrain), e.g. LARA pre-training, then LARA "
        "post-training with the same LAM. False: the variant's own recipe decides its LAM.",
    )
    overrides: list[str] = Field(
        default_factory=list, description="`key=value` overrides of the variant's own run (the study's preset).",
    )

    @field_validator("overrides", mode="before")
    @classmethod
    def _override_list(cls, value):
        return split_top_level(value) if isinstance(value, str) else value


def continues_lam(spec: list[str] | StagedVariant) -> bool:
    """Whether a variant's run continues its first stage's LAM."""
    return isinstance(spec, StagedVariant) and spec.continue_lam


def source_path(entry: Path | SourceSpec) -> Path:
    return entry.path if isinstance(entry, SourceSpec) else entry


def variant_parts(spec: list[str] | StagedVariant) -> tuple[list[str], FirstStage | None]:
    """A variant's own overrides and its first stage (None for a one-stage variant)."""
    return (spec, None) if isinstance(spec, list) else (spec.overrides, spec.first)


class StudyConfig(BaseModel):
    """A grid of training runs and evaluations: cells (variant, seed), each `lara train` then `lara eval libero`."""

    model_config = ConfigDict(extra="forbid")

    preset: str = Field(description="The `lara train` preset (a name in adapters/configs or a .yaml path).")
    data: list[SourceEntry] = Field(
        min_length=1, description="Demonstration files or folders, or data.paths entries ({path, labelled_per_task, "
        "episodes, ...}: e.g. the labelled side of a label-scarce split); every cell trains on them unless its "
        "variant gives its own data.paths.",
    )
    suite: str = Field(description="LIBERO suite of the evaluation: spatial, object, goal, 10, 90.")
    tasks: list[int | str] = Field(min_length=1, description="Task indices (or names) of the evaluation.")
    seeds: list[int] = Field(min_length=1, description="Training seeds (train.seed); every variant runs each.")
    trials: int = Field(ge=1, description="Evaluation trials per task; trial i starts from benchmark init state i.")
    out: Path = Field(description="Study folder: cells/<variant>/seed<S>/{run, eval}, study.json, study.md, study.png.")
    variants: dict[str, list[str] | StagedVariant] = Field(
        default_factory=dict, description="Extra named variants, each a list of `key=value` recipe overrides "
        "(e.g. fsq: [lara.lam.quantizer=fsq]), or a two-stage one {first: {preset, overrides}, overrides} whose "
        "run starts from its first stage's VLA. 'baseline' (baseline=true) and 'lara' (the preset) always run.",
    )
    overrides: list[str] = Field(
        default_factory=list, description="`key=value` recipe overrides shared by every variant (`--set`).",
    )
    comparisons: list[str] = Field(
        default_factory=list, description="Comparisons between two variants besides each one's against the "
        "baseline, as 'A - B' (e.g. 'lara - lara_shuffled'); reported seed-level under differences['A - B'].",
    )
    cell_order: list[list[str]] | None = Field(
        None, description="Groups of variants run one group after another, seed by seed within a group (e.g. "
        "[[baseline, lara], [lara_shuffled]]: every baseline and lara cell first); every variant in exactly one "
        "group. None: seed by seed, every variant of a seed before the next seed.",
    )
    decision_rule: str | None = Field(
        None, description="What the study will say for each outcome, fixed before its first cell runs; the "
        "report quotes it.",
    )
    max_steps: int | None = Field(
        None, ge=1, description="Evaluation step budget per episode instead of the suite's (debugging only).",
    )
    workers: int = Field(1, ge=1, description="Cells running at once.")
    eval_workers: int = Field(1, ge=1, description="Worker processes of each cell's evaluation.")
    threads: int = Field(
        1, ge=1, description="OMP/MKL threads of each training process and of each evaluation worker.",
    )

    @field_validator("variants", mode="before")
    @classmethod
    def _variant_lists(cls, value):
        """YAML may give a variant's overrides as one comma-separated string (a two-stage variant is a mapping)."""
        if isinstance(value, dict):
            return {k: split_top_level(v) if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _check(self) -> StudyConfig:
        for name, spec in self.variants.items():
            overrides, first = variant_parts(spec)
            if name in BUILT_IN:
                raise ValueError(f"variant name '{name}' is built in ({name} = {BUILT_IN[name] or 'the preset'}); "
                                 "give the extra variant another name")
            if not _NAME.match(name):
                raise ValueError(f"variant name '{name}' must be letters, digits, '_', '-' or '.' (it names a folder)")
            if not overrides and first is None:
                raise ValueError(f"variant '{name}' has no overrides, so it is 'lara' again; give it key=value pairs")
        groups = [("--set", self.overrides, OWNED_KEYS + SHARED_ONLY)]
        for name, spec in self.variants.items():
            overrides, first = variant_parts(spec)
            owned = CELL_KEYS + (("model.path",) if first else ())
            owned += ("refine.lam_from",) if continues_lam(spec) else ()
            groups.append((f"variant '{name}'", overrides, owned))
            if first is not None:  # its data may differ (action-free videos): only seed and folder are the cell's
                groups.append((f"variant '{name}' (first stage)", first.overrides, CELL_KEYS))
        for where, overrides, owned in groups:
            for assignment in overrides:
                key = assignment.split("=", 1)[0].strip()
                if "=" not in assignment:
                    raise ValueError(f"{where}: override '{assignment}' must look like key=value, e.g. train.steps=100")
                if key in owned and key == "model.path":
                    raise ValueError(f"{where}: 'model.path' of a two-stage variant is its first stage's VLA "
                                     "(<cell>/first/final/vla), set by the study")
                if key in owned and key == "refine.lam_from":
                    raise ValueError(f"{where}: 'refine.lam_from' of a variant with continue_lam is its first stage's "
                                     "LAM, set by the study")
                if key in owned:
                    raise ValueError(f"{where}: '{key}' is set by the study for every cell ({', '.join(owned)}); "
                                     "use --data, --seeds, --out or the 'baseline' variant instead")
        names = list(self.all_variants())
        for comparison in self.comparisons:
            parts = [part.strip() for part in comparison.split(" - ")]
            if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
                raise ValueError(f"comparison '{comparison}' must name two different variants as 'A - B', "
                                 "e.g. 'lara - lara_shuffled'")
            unknown = [part for part in parts if part not in names]
            if unknown:
                raise ValueError(f"comparison '{comparison}' names {', '.join(unknown)}, not a variant of this study "
                                 f"({', '.join(names)})")
        if self.cell_order is not None:
            listed = [name for group in self.cell_order for name in group]
            if sorted(listed) != sorted(names):
                raise ValueError(f"cell_order must list every variant exactly once ({', '.join(names)}), "
                                 f"got {', '.join(listed) or 'none'}")
        missing = [str(p) for p in map(source_path, self.data) if not p.exists()]
        if missing:
            raise ValueError(f"data: {', '.join(missing)} not found; give LIBERO HDF5 files or folders "
                             "(e.g. from `lara data generate`)")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        return self

    def all_variants(self) -> dict[str, list[str] | StagedVariant]:
        """Variant name -> its overrides (or its two stages), the built-in two first."""
        return {**BUILT_IN, **self.variants}

    def run_order(self) -> list[tuple[int, str]]:
        """(seed, variant) of every cell in the order they run: by `cell_order`'s groups, seed by seed in each."""
        groups = self.cell_order or [list(self.all_variants())]
        return [(seed, name) for group in groups for seed in self.seeds for name in group]


def load_study(raw: dict) -> StudyConfig:
    """Validate a study's fields; errors come back as one InputError line naming the bad fields."""
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'study'}: {e['msg'].removeprefix('Value error, ')}"
                             for e in error.errors())
        raise InputError(f"invalid study: {problems}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives a key twice (e.g. a variant named twice), which plain
    YAML merges silently, the last one winning."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"'{key}' is given twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)



def read_study_file(path: Path) -> dict:
    """The fields of a YAML study file."""
    if not path.is_file():
        raise InputError(f"study file {path} not found; give a YAML study file or the study's options "
                         "(--preset, --data, ...)")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        problem = str(error).splitlines()[0] if isinstance(error, UnicodeDecodeError) else " ".join(str(error).split())
        raise InputError(f"study file {path} is not a readable YAML study file: {problem}") from None
    if not isinstance(raw, dict):
        raise InputError(f"study file {path} must hold a mapping of study fields, got {type(raw).__name__}")
    return raw
