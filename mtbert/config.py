"""One typed experiment config. YAML in (a recipe), ``--set key=value`` on top, resolved YAML saved
with every run. Every option has a default here, documented in one place; unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

DATA_DIR_ENV = "MTBERT_DATA_DIR"
KEEP_CHECKPOINT = ("last", "none")


class ConfigError(ValueError):
    """An unknown option, a value of the wrong type, or an unreadable config file."""


@dataclasses.dataclass
class HeadConfig:
    type: str = ""            # "" = the task's default (linear for one text, cross_encoder for pairs)
    pooling: str = "pooler"   # sentence vector: pooler | cls | mean
    dropout: float = 0.1
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # the head's own, e.g. {product: true}
    loss: str = ""            # "" = the kind's default (cross_entropy, bce, mse); "a+b" adds two losses
    loss_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # per loss name
    pair_order: str = "fixed" # pair tasks: fixed (as in the file) | random (train on each pair in a random
                              #   order per epoch) | both (random, and predict the mean over both orders)


@dataclasses.dataclass
class ModelConfig:
    name: str = "all-MiniLM-L6-v2"   # checkpoint dir, embedded name, or hub id
    max_length: int = 128             # tokens per input, truncated longest-first for pairs
    heads: dict[str, HeadConfig] = dataclasses.field(default_factory=dict)  # per task; missing = defaults
    shared_hidden_layer: bool = False # one linear + ReLU shared by all heads, on every sentence vector (002)
    freeze: str = "none"              # none | encoder (train the heads only; the handout's "pretrain" mode) |
                                      #   embeddings (fix the embedding layer, train the rest)
    trainable_top_layers: int = 0     # with freeze: encoder, still train the top N layers and the pooler
    init_seed: Optional[int] = None   # the seed of the new heads' random initialisation (null = train.seed);
                                      #   runs that share it differ only in data order and dropout, as the
                                      #   ingredients of a weight average (mtbert soup) should
    init_from: str = ""               # start from a saved mtbert model (a run's best/): encoder, heads, tokenizer
    trainable_heads: list[str] = dataclasses.field(default_factory=list)  # train only these heads, all else
                                      #   frozen, only their tasks in the schedule (report 003's final stage)
    peft: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # method -> options, hooked into
                                      #   the encoder: adapter | pals | lhuc | lora, e.g. {adapter: {size: 64}}
    selection: str = ""               # train only selected encoder weights: sam | random | bitfit ("" = off)
    selection_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. {fraction: 0.3, per: global,
                                      #   batches: 100} (batches: per task in SAM's gradient pass; default all)
    save: str = "auto"                # auto | full | delta: delta saves only the trained encoder entries and
                                      #   loads on top of the base (auto: delta whenever part of the encoder is frozen)


@dataclasses.dataclass
class DataConfig:
    dir: str = ""                     # where the task files are; --data-dir and $MTBERT_DATA_DIR come first
                                      #   (see resolve_data_dir); relative to the config file's folder
    tasks: list[str] = dataclasses.field(default_factory=lambda: ["sst", "quora", "sts"])
    limit: Optional[int] = None       # first N examples of each split (smoke runs)
    eval_limit: Optional[int] = None  # first N examples of dev and test only (quick comparisons; overrides limit there)
    shrink: int = 1                   # train on a seeded random 1/M of each training set (report 000's M)
    augment: list[str] = dataclasses.field(default_factory=list)  # auxiliary sentiment data (report 003):
                                      #   cfimdb_to_sst, quora_sentiment_consistency, sts_sentiment_consistency
    augment_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # e.g. {threshold: 4.0}
    custom_tasks: list[dict] = dataclasses.field(default_factory=list)  # TaskSpec fields per user task


@dataclasses.dataclass
class SmartConfig:
    """SMART (Jiang et al. 2020): adversarial smoothness on the embedding output plus a Bregman proximal
    term towards an EMA teacher. Defaults are the reports' values."""

    enabled: bool = False
    tasks: list[str] = dataclasses.field(default_factory=list)  # [] = every task of the model
    weight: float = 1.0               # λ_s (5 in report 004)
    task_weights: dict[str, float] = dataclasses.field(default_factory=dict)  # λ_s per task, overriding weight
    epsilon: float = 1.0e-5           # radius of the perturbation ball (1e-6 in report 002)
    sigma: float = 1.0e-5             # std of the initial noise
    step_size: float = 1.0e-3         # η of each ascent step
    steps: int = 1                    # K ascent steps
    norm: str = "inf"                 # inf | l2, per token
    ascent_scope: str = "token"       # the ascent gradient normalised per token | batch (report 004's Algorithm 1)
    adversarial_dropout: bool = False # dropout in the adversarial passes (off, as report 004 found necessary)
    precision: str = "fp32"           # fp32: the adversarial step and the proximal term run with autocast off
                                      #   (an ε of 1e-5 is below bf16's resolution) | autocast: in the run's
                                      #   precision, faster, sound only for an ε far above bf16's ~4e-3
    proximal: bool = True             # the Bregman proximal term towards the EMA teacher
    proximal_weight: float = 1.0      # μ
    beta: float = 0.99                # teacher EMA β for the first beta_warmup share of updates ...
    beta_late: float = 0.999          # ... and after
    beta_warmup: float = 0.1


@dataclasses.dataclass
class DistillConfig:
    """Distillation from teachers (BAM!, Clark et al. 2019): a task's loss becomes
    λ·loss(gold) + (1 − λ)·loss(teacher), the teachers' outputs computed once and cached in the run."""

    teachers: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # task -> saved models (a run
                                      #   directory or its best/) or teacher recipes (.yaml, trained first);
                                      #   several per task make an ensemble (their probabilities averaged)
    gold_weight: float = 0.5          # λ, when not annealed
    anneal: bool = False              # teacher annealing: λ rises linearly from 0 to 1 over the updates
    temperature: float = 1.0          # T: teacher and student probabilities at logits / T (loss times T²)
    teacher_runs: str = ""            # where teacher recipes are trained ("" = <run>/teachers); a run there
                                      #   that finished is reused, one that stopped is resumed

    def __post_init__(self) -> None:
        empty = [task for task, paths in self.teachers.items() if not paths]
        if empty:
            raise ConfigError(f"train.distill.teachers: no teacher for {', '.join(empty)}")


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 128
    # Most padded tokens per evaluation batch (0: no cap; null: the device's default, see
    # mtbert.evaluate.evaluator.default_eval_max_tokens).
    eval_max_tokens: Optional[int] = None
    lr: float = 5e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-6
    optimizer: str = "adamw"          # adamw (ours) | torch_adamw
    lr_schedule: str = "linear"       # constant | linear | cosine (after warm-up)
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0        # 0 disables clipping
    penalties: dict[str, float] = dataclasses.field(default_factory=dict)  # parameter penalty -> weight, e.g. {l2: 1.0e-6}
    # per task, added with that task's loss only (in an update that holds its batch), e.g. {quora: {l2: 1.0e-6}}
    task_penalties: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    seed: int = 11711
    max_steps: Optional[int] = None   # stop after this many optimizer steps
    schedule: str = "shuffled"        # batch schedule: shuffled | sequential | zipped | cycled | round_robin |
                                      #   interleaved | proportional | temperature | annealed | mixed |
                                      #   random_mixed
    schedule_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. {temperature: 2.0}
    balancer: str = "sum"             # how a step's task losses combine: sum | mean | examples | dynamic |
                                      #   learned | uncertainty
    step_mode: str = "combined"       # combined: one update per step | separate: one update per task batch
    task_weights: dict[str, float] = dataclasses.field(default_factory=dict)  # fixed loss weight per task
                                      #   (with sentiment augmentation the defaults are report 003's ½ and ⅙s)
    surgery: str = "none"             # gradient surgery on the shared parameters: none | pcgrad | cagrad
    surgery_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. {c: 0.5} for cagrad
    pretrain_task: str = ""           # train this task alone for pretrain_epochs first (report 004's rrobin-pre)
    pretrain_epochs: int = 0          # epochs of that phase, before train.epochs of the multitask phase
    smart: SmartConfig = dataclasses.field(default_factory=SmartConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    layer_lr_decay: float = 1.0       # layer-wise lr decay: the heads, pooler and top encoder layer learn at
                                      #   lr, each layer below at decay times the one above it, the embeddings
                                      #   below the lowest (1.0 = one rate for all; BAM! uses 0.9)
    averaging: str = ""               # evaluate and save an average of the weights: "" (off) | ema | uniform
    averaging_options: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. {decay: 0.998} (ema),
                                      #   {start: 0.5} (uniform: the mean from that share of updates on)
    bucket_by_length: bool = True     # length-bucketed batches (sorted within shuffled buckets)
    bucket_batches: int = 50          # batches per bucket
    precision: str = "auto"           # auto | bf16 | fp16 | fp32
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    num_threads: Optional[int] = None # torch intra-op threads on CPU; None = torch's default (the cores
                                      #   shared out among a machine's processes under torchrun)
    compile: bool = False             # torch.compile the encoder (dynamic shapes: bucketed lengths vary)
    checkpoint_every: int = 500       # optimizer steps between resumable checkpoints (0 = epoch ends only)
    keep_checkpoint: str = "last"     # last: keep checkpoint.pt when the run ends | none: remove it once the run
                                      #   finished cleanly (best/, predictions and results stay; ~3x best/ on disk)
    eval_every_epoch: bool = True
    eval_every: int = 0               # optimizer steps between extra dev evaluations within an epoch (0 = none);
                                      #   each one can become best/, as an epoch end's can
    progress: bool = True             # tqdm bar with loss and tokens/s
    log_every: int = 100              # every N steps: loss and lr to metrics.jsonl (and TensorBoard), tokens/s to
                                      #   the log and TensorBoard (0 = never)
    tensorboard: bool = True          # TensorBoard scalars in <run>/tensorboard when the package is installed
    max_nonfinite_steps: int = 20     # stop the run (exit 1) after this many consecutive steps skipped for a
                                      #   non-finite loss: the weights have diverged

    def __post_init__(self) -> None:
        for name in ("batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}: must be 1 or more, got {getattr(self, name)}")
        if self.eval_every < 0:
            raise ConfigError(f"train.eval_every: must be 0 (epoch ends only) or more, got {self.eval_every}")
        if self.keep_checkpoint not in KEEP_CHECKPOINT:
            raise ConfigError(f"train.keep_checkpoint: must be one of {', '.join(KEEP_CHECKPOINT)}, got "
                              f"{self.keep_checkpoint!r}")
        if self.eval_max_tokens is not None and self.eval_max_tokens < 0:
            raise ConfigError(f"train.eval_max_tokens: must be 0 (no cap) or more, got {self.eval_max_tokens}")


@dataclasses.dataclass
class ExperimentConfig:
    name: str = "run"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    output_dir: str = ""              # "" = runs/<name>

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")

    def resolved_data_dir(self, flag: Optional[str] = None) -> Path:
        """``flag`` (--data-dir), else ``data.dir`` (which load_config has set from the environment
        unless the file's was replaced by --set), else ./data."""
        return resolve_data_dir(flag, self.data.dir, environment=False)


def data_dir_candidates(flag: Optional[str] = None, configured: Optional[str] = None,
                        environment: bool = True) -> list[tuple[str, str]]:
    """Where the task files may be, in order of precedence, with where each came from: the command
    line's ``--data-dir``, then ``$MTBERT_DATA_DIR`` (this machine's data), then the config's (or a
    saved model's) ``data.dir``, then ``./data``. The environment beats a config file because a
    recipe cannot know where a machine keeps its data, and the person who set the variable does;
    ``load_config`` applies that rule itself (a ``--set data.dir`` still beats the environment), so a
    loaded config's ``data.dir`` is asked with ``environment=False``."""
    places = [("--data-dir", flag), (f"${DATA_DIR_ENV}", os.environ.get(DATA_DIR_ENV) if environment else None),
              ("data.dir", configured), ("the default", "data")]
    return [(source, value) for source, value in places if value]


def resolve_data_dir(flag: Optional[str] = None, configured: Optional[str] = None, environment: bool = True) -> Path:
    """The first of ``data_dir_candidates`` (the highest-precedence place that is set), made absolute."""
    return Path(data_dir_candidates(flag, configured, environment)[0][1]).expanduser().resolve()


def describe_data_dirs(flag: Optional[str] = None, configured: Optional[str] = None, environment: bool = True) -> str:
    """Every place looked at, for an error: "--data-dir unset; $MTBERT_DATA_DIR /x (used); ..."."""
    candidates = data_dir_candidates(flag, configured, environment)
    chosen, given = candidates[0][0], dict(candidates)
    sources = ["--data-dir", f"${DATA_DIR_ENV}", "data.dir", "the default"]
    parts = []
    for source in sources:
        value = given.get(source)
        if source == f"${DATA_DIR_ENV}" and not environment:
            value = os.environ.get(DATA_DIR_ENV)
            parts.append(f"{source} {value} (it replaces a config file's data.dir)" if value else f"{source} unset")
            continue
        parts.append(f"{source} {value}{' (used)' if source == chosen else ''}" if value else f"{source} unset")
    return "; ".join(parts)


PATH_FIELDS = (("data", "dir"), ("model", "init_from"), ("output_dir",),
               ("train", "distill", "teacher_runs"))  # paths a config file may give
TEACHERS = ("train", "distill", "teachers")  # a mapping of task -> list of paths


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def build_dataclass(cls: type, values: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a plain dict, checking keys and types, naming ``where`` on error."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise unknown_options(unknown, fields, where)
    kwargs = {name: _coerce(hints[name], value, f"{where}.{name}" if where else name) for name, value in values.items()}
    return cls(**kwargs)


def unknown_options(unknown: Sequence[str], fields: set[str], where: str) -> "ConfigError":
    """The error for unknown keys: the closest known names when there are some, else all of them.
    ``error.unknown`` holds the dotted keys, so the caller can say whether a file or --set gave them."""
    import difflib

    section = f"section {where}" if where else "the top level"
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), sorted(fields), n=3, cutoff=0.6)
        hints.append(f"{key} (did you mean {' or '.join(close)}?)" if close else str(key))
    listing = "" if all("did you mean" in h for h in hints) else f"; known in {section}: {', '.join(sorted(fields))}"
    error = ConfigError(f"{where + ': ' if where else ''}unknown option(s) {', '.join(hints)}{listing}")
    error.unknown = [f"{where}.{key}" if where else str(key) for key in unknown]
    return error


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value or {}, where)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and Ellipsis not in args and len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)} ({value!r})")
        items = [_coerce(args[0] if origin is list else args[i], v, where) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "3e-5" (no dot) as a string
        except ValueError:
            pass
    if hint is Any or (isinstance(hint, type) and isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        return value
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _set_path(values: dict, dotted: str, raw: str) -> None:
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as error:
        problem = str(error).splitlines()[0]
        raise ConfigError(f"--set {dotted}={raw}: the value is not valid YAML ({problem})") from None
    _set_value(values, dotted, value, f"--set {dotted}")


def _set_value(values: dict, dotted: str, value, where: str) -> None:
    keys = dotted.split(".")
    node = values
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: {key} is not a section")
    node[keys[-1]] = value


def apply_variants(values: dict, chosen: Sequence[str], where: str) -> dict:
    """A recipe's ``variants:`` section names sets of ``dotted.key: value`` changes (a report's
    ablations, its CPU-scale version); the chosen ones apply in order, on top of the recipe, and their
    names are appended to the run's name. The section itself is not part of the resolved config."""
    variants = values.pop("variants", None) or {}
    if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
        raise ConfigError(f"{where}: variants must map names to mappings of dotted.key: value")
    for name in chosen:
        if name not in variants:
            known = ", ".join(sorted(variants)) or "none"
            raise ConfigError(f"{where}: unknown variant {name!r}; this recipe has: {known}")
        for dotted, value in variants[name].items():
            _set_value(values, str(dotted), value, f"{where}: variant {name}")
    if chosen:
        values["name"] = "+".join([str(values.get("name") or Path(where).stem), *chosen])
    return values


def recipe_variants(path: str | Path) -> dict[str, dict]:
    """The named variants a recipe offers (empty when it has none)."""
    return dict(read_yaml_mapping(Path(path)).get("variants") or {})


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_relative_paths(values: dict, folder: Path, only: Optional[tuple] = None) -> None:
    """Make the path fields of raw config ``values`` absolute against ``folder``: a config file's
    against its own folder (so a recipe works from any working directory), a ``--set`` value against
    the working directory. ``model.name`` becomes a path only when that path exists: otherwise it is
    an embedded name or a hub id."""
    fields = [only] if only else [*PATH_FIELDS, ("model", "name"), TEACHERS]
    for keys in fields:
        if keys == TEACHERS:
            resolve_teacher_paths(values, folder)
            continue
        node = values
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or not isinstance(node.get(keys[-1]), str) or not node[keys[-1]]:
            continue
        value = Path(node[keys[-1]]).expanduser()
        if value.is_absolute():
            continue
        candidate = (folder / value).resolve()
        if keys == ("model", "name") and not candidate.exists():
            continue
        node[keys[-1]] = str(candidate)


def resolve_teacher_paths(values: dict, folder: Path) -> None:
    """``train.distill.teachers``' relative paths made absolute against ``folder`` (a lone path is a list of one)."""
    teachers = values.get("train", {}).get("distill", {}).get("teachers") if isinstance(values.get("train"), dict) \
        and isinstance(values["train"].get("distill"), dict) else None
    if not isinstance(teachers, dict):
        return
    for task, paths in teachers.items():
        if isinstance(paths, str):
            paths = [paths]
        if isinstance(paths, list):
            teachers[task] = [str((folder / Path(p).expanduser()).resolve()) if isinstance(p, str) and p
                              and not Path(p).expanduser().is_absolute() else p for p in paths]


def read_yaml_mapping(path: Path) -> dict:
    """A YAML file whose top level is a mapping, or a ConfigError naming the file."""
    if not path.exists():
        raise ConfigError(f"config file {path} not found")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, expected a YAML config file")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return loaded


def load_config(path: Optional[str | Path] = None, overrides: Optional[list[str]] = None,
                variants: Sequence[str] = ()) -> ExperimentConfig:
    """Defaults, then the YAML file at ``path``, then its chosen ``variants``, then each ``key=value``
    override (YAML-parsed)."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        values = apply_variants(_merge(values, read_yaml_mapping(path)), variants, str(path))
        resolve_relative_paths(values, path.parent)
    elif variants:
        raise ConfigError("variants need a recipe file that defines them")
    if os.environ.get(DATA_DIR_ENV):  # this machine's data beats a file's data.dir; --set beats it, below
        values.setdefault("data", {})
        if isinstance(values["data"], dict):
            values["data"]["dir"] = str(Path(os.environ[DATA_DIR_ENV]).expanduser().resolve())
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=3e-5")
        key, raw = item.split("=", 1)
        _set_path(values, key.strip(), raw.strip())
        keys = tuple(key.strip().split("."))
        if keys in PATH_FIELDS + (("model", "name"),):
            resolve_relative_paths(values, Path.cwd(), only=keys)
        elif TEACHERS[: len(keys)] == keys or keys[: len(TEACHERS)] == TEACHERS:  # the teachers or a mapping above
            resolve_relative_paths(values, Path.cwd(), only=TEACHERS)
            if len(keys) < len(TEACHERS):
                resolve_relative_paths(values, Path.cwd(), only=("train", "distill", "teacher_runs"))
    where = str(path) if path is not None else "config"
    try:
        config = build_dataclass(ExperimentConfig, values, "")
    except ConfigError as error:
        given = [item for item in overrides or [] for key in getattr(error, "unknown", [])
                 if item.split("=", 1)[0].strip() == key or item.split("=", 1)[0].strip().startswith(key + ".")]
        raise ConfigError(f"{'--set ' + given[0] if given else where}: {error}") from None
    check_config(config, where)
    return config


def check_config(config: "ExperimentConfig", where: str = "config") -> None:
    """Every field in range (``mtbert.validation``), all problems in one ConfigError naming ``where``."""
    from .validation import config_problems

    problems = config_problems(config.to_dict())
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
