"""The trainer end to end on a tiny corpus the tests write: both phases learn, the bundle serves,
resume is bit-exact, DDP ranks agree, configs are checked. Every run is a tiny model on 1 s chunks."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import signal
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
import yaml
from conftest import TEXT_DIM, melody, tiny_config, tone

import stemserver_training.data as data_module
import stemserver_training.labels as labels_module
import stemserver_training.loop as loop_module
from stemserver.checkpoint import load_checkpoint
from stemserver.errors import ConfigError
from stemserver.model import StemJEPA
from stemserver_training.cache import build_cache
from stemserver_training.cli import main as training_main
from stemserver_training.config import JEPAConfig, TrainConfig, apply_override, load_config, parse_config
from stemserver_training.datasets import read_dataset
from stemserver_training.distributed import Distributed
from stemserver_training.loop import NonFiniteLossError
from stemserver_training.losses import InfoNCE
from stemserver_training.objectives import ContrastiveObjective, JEPAObjective
from stemserver_training.signals import stop_on_signals
from stemserver_training.state import bundle_of, latest_checkpoint
from stemserver_training.train import train

pytestmark = pytest.mark.slow  # the whole file: subprocesses, rendering or training (README: test tiers)

RATE = 16_000
CONFIGS = Path(__file__).parents[1] / "training" / "configs"
LABELS = {"lead.wav": ["synth lead", "square lead"], "bass.wav": ["bass", "synth bass"],
          "pad.wav": ["synth pad", "warm pad"]}


class HashText:
    """A stand-in text model: a fixed random unit vector per label, no model to load."""

    dim = TEXT_DIM

    def embed(self, labels: list[str]) -> torch.Tensor:
        rows = [torch.randn(self.dim, generator=torch.Generator().manual_seed(sum(map(ord, label)) * 7919 + len(label)))
                for label in labels]
        return F.normalize(torch.stack(rows), dim=-1) if rows else torch.zeros(0, self.dim)

    def identity(self) -> dict:
        return {"backend": "minilm", "model_id": "test-hash", "dim": self.dim}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """16 tracks of 3 s, three stems each: a lead line, a bass an octave down, a pad a fifth up, all
    over the track's own drone, so a mix and a stem of one track audibly belong together."""
    root = tmp_path_factory.mktemp("multitracks")
    for t in range(16):
        track = root / f"track{t:02d}"
        track.mkdir()
        base = 110 * 2 ** (t / 5)
        drone = tone(base, 3.0, RATE, 0.2)
        soundfile.write(track / "lead.wav", 0.5 * melody(3.0, seed=t) + drone, RATE)
        soundfile.write(track / "bass.wav", tone(base / 2, 3.0, RATE, 0.4) + drone, RATE)
        soundfile.write(track / "pad.wav", tone(base * 1.5, 3.0, RATE, 0.2) + drone, RATE)
        (track / "labels.yaml").write_text(yaml.safe_dump(LABELS))
    cache = tmp_path_factory.mktemp("cache")
    build_cache(read_dataset("folder", root), cache, valid_fraction=0.0, test_fraction=0.0, progress=False)
    return cache


def tiny(cache_dir: Path, out: Path, *overrides: str) -> TrainConfig:
    """tiny.yaml on the test cache, smaller still: 1 s chunks, batch 8, no progress bar."""
    return load_config(CONFIGS / "tiny.yaml", [
        "data.layout=null", "data.root=null", f"data.cache={cache_dir}", f"out={out}", "data.chunk_seconds=1.0",
        "data.norm_chunks=16", "optim.batch_size=8", "runtime.progress=false", "runtime.tensorboard=false",
        *overrides])


def test_tiny_trains_both_phases_and_the_bundle_serves(cache_dir, tmp_path, monkeypatch):
    """The shipped tiny config, with the real MiniLM text model: both losses go down and what
    training wrote loads and serves without loading a text model."""
    out = tmp_path / "run"
    config = load_config(CONFIGS / "tiny.yaml", ["data.layout=null", "data.root=null", f"data.cache={cache_dir}",
                                                 f"out={out}", "runtime.progress=false", "runtime.log_every=1"])
    result = train(config)

    contrastive, jepa = result.phases
    for phase, steps in ((contrastive, config.contrastive.steps), (jepa, config.jepa.steps)):
        losses = [row["loss"] for row in phase.history]
        assert len(losses) == steps
        assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.2, (phase.phase, losses)
    batch = config.optim.batch_size
    assert np.mean([row["loss"] for row in contrastive.history[-10:]]) < math.log(batch)  # beats chance...
    assert np.mean([row["accuracy"] for row in contrastive.history[-10:]]) > 2 / batch  # ...so no collapse
    assert min(row["target_std"] for row in jepa.history) > 0.05  # phase 2 does not collapse either
    assert all(0.99 <= row["tau"] <= 0.999 for row in jepa.history)
    assert result.model_path == out / "jepa.safetensors" and (out / "contrastive.safetensors").is_file()
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("phase,step,loss,lr") and len(rows) == 1 + 2 * config.contrastive.steps
    if importlib.util.find_spec("tensorboard"):
        assert any((out / "tensorboard").iterdir())

    # Serving: no text model may load for labels the checkpoint cached.
    def no_text_model(*args, **kwargs):
        raise AssertionError("a text model was loaded")

    monkeypatch.setattr("stemserver.text.MiniLMText.__init__", no_text_model)
    checkpoint = load_checkpoint(result.model_path)
    assert checkpoint.text_backend["backend"] == "minilm"
    assert checkpoint.info["phase"] == "jepa" and checkpoint.info["step"] == config.jepa.steps
    assert checkpoint.info["config"]["model"]["embed_dim"] == 64
    front_end = checkpoint.config.front_end
    assert (front_end.mean, front_end.std) != (-9.453, 3.569)  # measured on this corpus
    assert -20 < front_end.mean < 0 and 1 < front_end.std < 10
    model = checkpoint.build_model()
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name  # served = trained, bit for bit
    labels = checkpoint.label_embedder()
    assert {"square lead", "synth bass", "warm pad", "music", "bass"} <= set(labels.known_labels)
    text = labels.embed(["bass"])
    mix = torch.from_numpy(tone(55, 2.0, RATE) + melody(2.0, seed=3))[None]
    with torch.no_grad():
        grid = model.encode(mix)
        prediction = model.predict(grid, text)
    assert grid.shape == prediction.shape == (1, 5, 12, 64) and torch.isfinite(prediction).all()


def test_resume_is_bit_for_bit(cache_dir, tmp_path, monkeypatch):
    """Stop in phase 1, resume, stop in phase 2, resume: same weights and optimiser state as one
    uninterrupted run."""
    steps = ["contrastive.steps=5", "jepa.steps=5", "contrastive.warmup_steps=2", "jepa.warmup_steps=2",
             "runtime.checkpoint_every=100", "runtime.log_every=2"]
    whole = train(tiny(cache_dir, tmp_path / "whole", *steps), text_backend=HashText())

    stops = iter([3, 4])  # stop after phase-1 step 3, then after phase-2 step 2 (4 steps later)
    stop_at, calls = next(stops), 0

    def stop_after(flag, ddp, device):
        nonlocal calls
        calls += 1
        return flag or calls == stop_at

    monkeypatch.setattr(loop_module, "any_rank", stop_after)
    config = tiny(cache_dir, tmp_path / "pieces", *steps)
    first = train(config, text_backend=HashText())
    assert first.interrupted and latest_checkpoint(config.out).name == "contrastive-0000003.state.pt"
    with pytest.raises(ConfigError, match="--resume"):
        train(config, text_backend=HashText())
    stop_at, calls = next(stops), 0
    second = train(config, resume=True)
    assert second.interrupted and latest_checkpoint(config.out).name == "jepa-0000002.state.pt"
    stop_at = -1
    third = train(config, resume=True)
    assert not third.interrupted and [p.steps for p in third.phases] == [3]

    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, third.model.state_dict()[name]), name
    a = torch.load(tmp_path / "whole/checkpoints/jepa-0000005.state.pt", weights_only=True)
    b = torch.load(config.out / "checkpoints/jepa-0000005.state.pt", weights_only=True)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    for key, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][key][name]), (key, name)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert [r["loss"] for r in whole.phases[1].history][-1] == third.phases[0].history[-1]["loss"]
    logged = [tuple(row.split(",")[:2]) for row in (config.out / "metrics.csv").read_text().splitlines()[1:]]
    assert len(logged) == len(set(logged)) and logged[-1] == ("jepa", "5")  # rows past a checkpoint not repeated


def test_a_nan_batch_stops_the_run_with_the_weights_before_it_and_resume_continues_exactly(cache_dir, tmp_path,
                                                                                             monkeypatch):
    """A micro-batch of NaN audio at phase-1 step 3: no update is applied, the checkpoint after
    step 2 is written, NonFiniteLossError says what to do. Resumed on clean data, the run ends
    with exactly the weights of a run that never saw the NaN (mean pooling draws no randomness)."""
    steps = ["contrastive.steps=4", "jepa.steps=2", "contrastive.warmup_steps=2", "jepa.warmup_steps=1",
             "runtime.checkpoint_every=100", "runtime.log_every=1", "data.workers=0"]
    whole = train(tiny(cache_dir, tmp_path / "whole", *steps), text_backend=HashText())

    collate, batches = data_module.collate_examples, 0

    def poisoned(examples):
        nonlocal batches
        batches += 1
        batch = collate(examples)
        if batches == 3:
            batch.context[0, 100] = math.nan
        return batch

    monkeypatch.setattr(data_module, "collate_examples", poisoned)
    config = tiny(cache_dir, tmp_path / "nan", *steps)
    with pytest.raises(NonFiniteLossError) as error:
        train(config, text_backend=HashText())
    message = str(error.value)
    saved = config.out / "checkpoints" / "contrastive-0000002.safetensors"
    assert "contrastive loss became nan at step 3 of 4" in message and str(saved) in message
    assert "--resume" in message and "optim.base_lr=" in message
    assert latest_checkpoint(config.out).name == "contrastive-0000002.state.pt"
    weights = load_checkpoint(saved).build_model().state_dict()
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())
    logged = (config.out / "metrics.csv").read_text().splitlines()[1:]
    assert [row.split(",")[1] for row in logged] == ["1", "2"] and "nan" not in "".join(logged)

    monkeypatch.setattr(data_module, "collate_examples", collate)
    resumed = train(config, resume=True)
    assert [p.steps for p in resumed.phases] == [2, 2]
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_a_diverging_run_exits_1_and_says_to_resume_with_a_lower_learning_rate(cache_dir, tmp_path, monkeypatch,
                                                                                capsys):
    """An absurd learning rate blows the weights up within a few steps: the command line exits 1
    with `train: error:` and the way out, and the checkpoint it names holds finite weights."""
    monkeypatch.setattr(labels_module, "MiniLMText", HashText)  # no text model to load
    out = tmp_path / "diverged"
    code = training_main(["train", str(CONFIGS / "tiny.yaml"), "data.layout=null", "data.root=null",
                          f"data.cache={cache_dir}", "data.chunk_seconds=1.0", "data.norm_chunks=16",
                          "optim.batch_size=8", "optim.base_lr=1e30", "runtime.progress=false",
                          "runtime.tensorboard=false", "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "\ntrain: error: the contrastive " in err and " became " in err
    assert "--resume" in err and "optim.base_lr=2.5e+29 (now 1e+30)" in err, err
    saved = latest_checkpoint(out)
    assert saved is not None and str(bundle_of(saved)) in err
    weights = load_checkpoint(bundle_of(saved)).build_model().state_dict()
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())


def test_phase_two_conditions_on_text_through_film():
    """The JEPA objective sends gradient into every FiLM gamma/beta, and the phase-1 objective
    into the encoder and the temperature only."""
    torch.manual_seed(0)
    model = StemJEPA(tiny_config())
    mel = torch.randn(4, 80, 64)
    text = F.normalize(torch.randn(4, TEXT_DIM), dim=-1)
    loss, figures = JEPAObjective(model)(mel, mel.flip(0), text)
    loss.backward()
    for film in model.predictor.film:
        for linear in (film.gamma, film.beta):
            assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.target_encoder.parameters())
    assert figures["target_std"] > 0

    model.zero_grad(set_to_none=True)
    objective = ContrastiveObjective(model.encoder, InfoNCE(), Distributed())
    loss, figures = objective(mel, mel.flip(0))
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert objective.loss.log_temperature.grad is not None
    assert all(p.grad is None for p in model.predictor.parameters())
    assert 0 <= figures["accuracy"] <= 1


def test_column_pooling_pairs_each_mix_column_with_the_stem_column_at_the_same_time():
    """pooling=columns: 8 columns of each of 4 examples are 32 candidates; with the stem equal to
    the mix every column finds its own twin (a positive at the same time), and `both` averages the
    mean-pooled and the per-column losses."""
    torch.manual_seed(0)
    model = StemJEPA(tiny_config())
    mel = torch.randn(4, 80, 16 * 12)  # 12 columns of distinct noise
    info_nce = InfoNCE(temperature=0.05)
    columns = ContrastiveObjective(model.encoder, info_nce, Distributed(), "columns", columns=8)
    loss, figures = columns(mel, mel.clone())
    assert figures["accuracy"] == 1.0 and loss < math.log(32)
    mean = ContrastiveObjective(model.encoder, info_nce, Distributed(), "mean")
    both = ContrastiveObjective(model.encoder, info_nce, Distributed(), "both", columns=12)
    other = mel.flip(0)
    everything = ContrastiveObjective(model.encoder, info_nce, Distributed(), "columns", columns=12)
    expected = (mean(mel, other)[0] + everything(mel, other)[0]) / 2  # 12 of 12 columns: no sampling left
    assert torch.allclose(both(mel, other)[0], expected, atol=1e-5)


def test_shift_consistency_adds_its_weighted_loss_to_phase_two():
    torch.manual_seed(0)
    model = StemJEPA(tiny_config())
    mix, stem, text = torch.randn(2, 80, 16 * 12), torch.randn(2, 80, 16 * 12), torch.randn(2, TEXT_DIM)
    plain = JEPAObjective(model)
    shifted = JEPAObjective(model, JEPAConfig(shift_weight=0.5, shift_max_columns=3, shift_columns=4))
    loss, figures = plain(mix, stem, text)
    assert set(figures) == {"target_std"}
    total, figures = shifted(mix, stem, text)
    assert {"shift_loss", "shift_accuracy"} <= set(figures) and 0 <= figures["shift_accuracy"] <= 1
    assert total.item() == pytest.approx(loss.item() + 0.5 * figures["shift_loss"].item(), abs=1e-5)
    total.backward()  # the shift term reaches the context encoder
    assert model.encoder.patch_embed.weight.grad.abs().sum() > 0


def _ddp_worker(rank: int, world_size: int, port: int, config: TrainConfig, out: Path) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    result = train(config, text_backend=HashText())
    losses = [row["loss"] for phase in result.phases for row in phase.history]
    torch.save({"weights": result.model.state_dict(), "losses": losses}, out / f"rank{rank}.pt")


def test_ddp_with_two_gloo_processes(cache_dir, tmp_path):
    """Two CPU processes share each global batch: both end with the same weights, and the losses
    are those of one process training on the same global batches (contrastive negatives gathered
    across ranks included)."""
    config = tiny(cache_dir, tmp_path / "ddp", "contrastive.steps=3", "jepa.steps=3", "runtime.log_every=1",
                  "contrastive.warmup_steps=1", "jepa.warmup_steps=1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, config, tmp_path), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, tensor in ranks[0]["weights"].items():
        assert torch.equal(tensor, ranks[1]["weights"][name]), name
    assert ranks[0]["losses"] == ranks[1]["losses"]
    assert (tmp_path / "ddp" / "jepa.safetensors").is_file()
    single = train(dataclasses.replace(config, out=tmp_path / "single"), text_backend=HashText())
    losses = [row["loss"] for phase in single.phases for row in phase.history]
    # Same start, same global batch: the first loss agrees to float rounding. Later ones drift a
    # little (Adam turns rounding-level gradient differences into whole steps), but stay close.
    assert ranks[0]["losses"][0] == pytest.approx(losses[0], rel=1e-6)
    assert ranks[0]["losses"] == pytest.approx(losses, rel=0.05)


def test_checkpoints_are_pruned_and_phase_two_can_start_from_a_phase_one_bundle(cache_dir, tmp_path):
    config = tiny(cache_dir, tmp_path / "p1", "phases=[contrastive]", "contrastive.steps=4",
                  "runtime.checkpoint_every=1", "runtime.keep_checkpoints=2")
    phase_one = train(config, text_backend=HashText())
    assert sorted(p.name for p in (config.out / "checkpoints").iterdir()) == [
        "contrastive-0000003.safetensors", "contrastive-0000003.state.pt",
        "contrastive-0000004.safetensors", "contrastive-0000004.state.pt"]
    config = tiny(cache_dir, tmp_path / "p2", "phases=[jepa]", "jepa.steps=2",
                  f"jepa.init_checkpoint={phase_one.model_path}")
    phase_two = train(config)  # the label cache comes from the bundle: no text model needed
    start = load_checkpoint(phase_one.model_path).build_model()
    assert start.config == phase_two.model.config  # the normalisation statistics travel along
    assert not torch.equal(start.encoder.patch_embed.weight, phase_two.model.encoder.patch_embed.weight)


def test_config_errors_name_the_key(tmp_path):
    base = {"data": {"cache": str(tmp_path)}}

    def error(data: dict) -> str:
        with pytest.raises(ConfigError) as caught:
            parse_config(data)
        return str(caught.value)

    assert "'optim.batchsize'" in error({**base, "optim": {"batchsize": 8}})
    assert "did you mean 'optim.batch_size'" in error({**base, "optim": {"batchsize": 8}})
    assert "contrastive.steps: expected an integer" in error({**base, "contrastive": {"steps": "many"}})
    assert "jepa.tau_end: must be at most 1" in error({**base, "jepa": {"tau_end": 1.5}})
    assert "model.size: must be one of" in error({**base, "model": {"size": "huge"}})
    assert "phases: must be one of" in error({**base, "phases": ["contrastive", "supervised"]})
    assert "data.cache: required" in error({})
    assert "data.root" in error({**base, "data": {"cache": "c", "layout": "folder"}})
    assert "optim.batch_size" in error({**base, "optim": {"batch_size": 10, "accumulation": 4}})
    assert "jepa.init_checkpoint: required" in error({**base, "phases": ["jepa"]})
    assert "jepa.init" in error({**base, "jepa": {"init": "scratch"}})
    assert "text.clap_checkpoint" in error({**base, "text": {"backend": "clap"}})
    assert "model:" in error({**base, "model": {"embed_dim": 66, "num_heads": 4}})
    assert parse_config({**base, "phases": ["jepa"], "jepa": {"init": "scratch"}}).phases == ["jepa"]
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_override({}, "optim.batch_size")
    for name in ("paper", "tiny", "demo"):  # the shipped configs are valid, and found by name
        config = load_config(CONFIGS / f"{name}.yaml")
        assert parse_config(config.to_dict()) == config
        assert load_config(name) == load_config(f"{name}.yaml") == config
    with pytest.raises(ConfigError, match=r"nope: no such training config; .* \(compatible, demo, paper, tiny\)"):
        load_config("nope")
    with pytest.raises(ConfigError, match="no such training config"):
        load_config(tmp_path / "tiny")  # a path is never taken for a name


def test_a_file_of_that_name_wins_over_a_shipped_config_and_a_folder_does_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()  # e.g. a folder of demo material: not a config
    assert load_config("demo") == load_config(CONFIGS / "demo.yaml")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"data": {"cache": "here"}, "seed": 5}))
    assert load_config("tiny.yaml").seed == 5 and load_config("tiny").seed == 0


def test_paper_config_has_the_papers_settings():
    config = load_config(CONFIGS / "paper.yaml")
    assert config.model_config().embed_dim == 768 and config.model_config().depth == 12
    assert (config.optim.batch_size, config.optim.base_lr, config.optim.grad_clip) == (256, 1e-3, 3.0)
    assert config.contrastive.steps == config.jepa.steps == 300_000
    assert config.contrastive.warmup_steps == 20_000
    assert (config.jepa.tau_start, config.jepa.tau_end) == (0.99995, 0.99999)
    assert config.data.chunk_seconds == 8.0


def test_command_line_exit_codes(tmp_path, capsys):
    with pytest.raises(SystemExit) as usage:
        training_main(["train", str(CONFIGS / "tiny.yaml"), "optim.batch_size"])
    assert usage.value.code == 2
    assert training_main(["train", str(CONFIGS / "tiny.yaml"), "optim.batchsize=3"]) == 1
    assert "unknown key 'optim.batchsize'" in capsys.readouterr().err
    assert training_main(["prepare", "folder", str(tmp_path / "missing"), str(tmp_path / "cache")]) == 1
    assert training_main([]) == 2


def test_stop_on_signals_turns_sigint_into_a_flag():
    before = signal.getsignal(signal.SIGINT)
    with stop_on_signals() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.is_set()
        with pytest.raises(KeyboardInterrupt):  # a second ^C interrupts at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_held_out_labels_never_reach_training_and_labels_can_come_from_a_bundle(cache_dir, tmp_path, monkeypatch):
    """data.holdout_labels: no batch has a held-out stem as target or in its context. A second run
    with text.labels_from trains without any text model, on the first run's label table."""
    batches = []
    collate = data_module.collate_examples

    def recording(examples):
        batch = collate(examples)
        batches.append(batch)
        return batch

    monkeypatch.setattr(data_module, "collate_examples", recording)
    short = ["contrastive.steps=3", "jepa.steps=3", "contrastive.warmup_steps=1", "jepa.warmup_steps=1",
             "data.workers=0", "data.holdout_labels=[Synth Bass]"]
    first = train(tiny(cache_dir, tmp_path / "first", *short), text_backend=HashText())
    assert len(batches) == 6  # 3 + 3 steps
    for batch in batches:
        assert all("synth bass" not in path for path in batch.label_paths)
        assert all(stem in ("lead", "pad") for stem in batch.stems)
        assert all(set(stems) <= {"lead", "pad"} for stems in batch.context_stems)
    assert load_checkpoint(first.model_path).info["config"]["data"]["holdout_labels"] == ["Synth Bass"]

    def no_text_model(*args, **kwargs):
        raise AssertionError("a text model was loaded")

    monkeypatch.setattr("stemserver.text.MiniLMText.__init__", no_text_model)
    second = train(tiny(cache_dir, tmp_path / "second", *short, f"text.labels_from={first.model_path}"))
    assert second.labels.known_labels == first.labels.known_labels
    assert torch.equal(second.labels.embeddings, first.labels.embeddings)
    with pytest.raises(ConfigError, match="no train track has two stems"):
        train(tiny(cache_dir, tmp_path / "third", *short[:-1], "data.holdout_labels=[bass, synth pad]"),
              text_backend=HashText())
