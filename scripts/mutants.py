"""Tests that can fail: each mutant below changes one line of mirsearch the way a plausible bug
would, and the tests it names must then fail. `make mutants` runs them on a copy of the checkout
(its tracked files as they are now, ../shared beside it where there is one) and prints a line a
mutant; it exits 1 if a mutant survives or no longer applies (its line changed: update it here).

Each of these had once been a survivor, or guards a rule the README or docs/ state (versions ranked
right, prune only under the folders named, flags that still hold); a new one belongs here when
a bug is fixed whose test could have been missed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    file: str  # relative to the repository
    find: str  # text found exactly once in `file`
    put: str  # what replaces it
    tests: tuple[str, ...]  # pytest arguments that must then fail


MUTANTS = (
    Mutant(
        "mirsearch/duplicates.py",
        "    return (m.score, m.agreement, m.similarity)",
        "    return (m.score, m.similarity, m.agreement)",
        ("tests/test_duplicates.py",),
    ),
    Mutant(
        "mirsearch/duplicates.py",
        "return set(sorted(evidence, key=lambda t: (-evidence[t], t))[:n])",
        "return set(sorted(evidence, key=lambda t: (evidence[t], t))[:n])",
        ("tests/test_duplicates.py",),
    ),
    Mutant(
        "mirsearch/duplicates.py",
        "n = config.verify_tracks * max(1, int(np.ceil(duration_s / 60.0)))",
        "n = config.verify_tracks",
        ("tests/test_duplicates.py",),
    ),
    Mutant(
        "mirsearch/scoring.py",
        "            -(m.agreement - RANK_SPEED_PENALTY * abs(m.speed - 1.0)),",
        "            -m.agreement,",
        ("tests/test_scoring.py",),
    ),
    Mutant(
        "mirsearch/scoring.py",
        "    return replace(m, score=_probability(logit - logits))",
        "    return replace(m, score=_probability(logit))",
        ("tests/test_duplicates.py",),
    ),
    Mutant(
        "mirsearch/groups.py",
        'if track_id not in live or m["track_id"] not in live or m["track_id"] == track_id:',
        'if m["track_id"] not in live or m["track_id"] == track_id:',
        ("tests/test_groups.py",),
    ),
    Mutant(
        "mirsearch/groups.py",
        "edges.setdefault(q, []).append((strength, t, 1.0 / speed))",
        "edges.setdefault(q, []).append((strength, t, speed))",
        ("tests/test_groups.py",),
    ),
    Mutant(
        "mirsearch/search.py",
        "    if len(queries) <= config.max_query_windows:",
        "    if True:",
        ("tests/test_search.py",),
    ),
    Mutant(
        "mirsearch/search.py",
        "        allowed = set(map(int, allowed_tracks)) - {int(track_id)}",
        "        allowed = set(map(int, allowed_tracks))",
        ("tests/test_search.py",),
    ),
    Mutant(
        "mirsearch/search.py",
        "        score = max(blend, aligned)  # an excerpt (or a version) lined up in time wins",
        "        score = blend",
        ("tests/test_search.py",),
    ),
    Mutant(
        "mirsearch/workers.py",
        "            if len(pending) >= AHEAD * workers:\n"
        "                yield _result(pending.popleft())\n",
        "",
        ("tests/test_workers.py",),
    ),
    Mutant(
        "mirsearch/workers.py",
        "            signal.raise_signal(noted[0])",
        "            pass",
        ("tests/test_workers.py", "-k", "interrupt"),
    ),
    Mutant(
        "mirsearch/plan.py",
        "same_stat = row.size_bytes == stat.st_size and row.mtime == stat.st_mtime",
        "same_stat = row.size_bytes == stat.st_size",
        ("tests/test_plan.py",),
    ),
    Mutant(
        "mirsearch/plan.py",
        "if row.size_bytes in wanted and not os.path.lexists(row.path):",
        "if row.size_bytes in wanted:",
        ("tests/test_plan.py",),
    ),
    Mutant(
        "mirsearch/plan.py",
        '    return any(path == str(root) or path.startswith(os.path.join(root, "")) '
        "for root in roots)",
        "    return any(path == str(root) or path.startswith(str(root)) for root in roots)",
        ("tests/test_indexer.py", "-k", "prune"),
    ),
    Mutant(
        "mirsearch/flags.py",
        'kept = [m for m in evidence if m["track_id"] not in gone and still_holds(m, contents)]',
        'kept = [m for m in evidence if m["track_id"] not in gone]',
        ("tests/test_indexer.py", "-k", "still_holds"),
    ),
    Mutant(
        "mirsearch/flags.py",
        '    row.duplicate_of = kept[0]["track_id"] if kept else None',
        '    row.duplicate_of = kept[-1]["track_id"] if kept else None',
        ("tests/test_indexer.py", "-k", "still_holds"),
    ),
    Mutant(
        "mirsearch/records.py",
        "    return max(highest, state.last_track_id if state else 0) + 1",
        "    return highest + 1",
        ("tests/test_indexer.py", "-k", "pruned_last"),
    ),
    Mutant(
        "mirsearch/api.py",
        "        for stream in range(min(decoded.info.streams, audio.MAX_STREAMS)):",
        "        for stream in range(decoded.info.streams):",
        ("tests/test_api.py", "-k", "many_sound"),
    ),
    Mutant(
        "mirsearch/track_filters.py",
        "    return and_(Track.id.in_(text_candidates(indexed)), matches)",
        "    return Track.id.in_(text_candidates(indexed))",
        ("tests/test_catalog.py", "-k", "reading_every_row and sqlite"),
    ),
    Mutant(
        "mirsearch/track_filters.py",
        '        if short:\n            every.append({"regex"',
        '        if False:\n            every.append({"regex"',
        ("tests/test_catalog.py", "-k", "reading_every_row and sqlite"),
    ),
    Mutant(
        "mirsearch/track_filters.py",
        "        if short:\n            pattern =",
        "        if False:\n            pattern =",
        ("tests/test_catalog.py", "-k", "reading_every_row and postgresql"),
    ),
    Mutant(
        "mirsearch/track_filters.py",
        '        after = f"(?!{letter_or_digit})" if form[-1:].isalnum() else ""',
        '        after = ""',
        ("tests/test_catalog.py", "-k", "reading_every_row and postgresql"),
    ),
    Mutant(
        "mirsearch/track_filters.py",
        '        before = f"(?<!{letter_or_digit}{escaped})" if form[:1].isalnum() else ""',
        '        before = ""',
        ("tests/test_catalog.py", "-k", "reading_every_row and sqlite"),
    ),
    Mutant(
        "mirsearch/database.py",
        "        else:\n            return False\n    return True\n",
        "    return True\n",
        ("tests/test_catalog.py", "-k", "reading_every_row and sqlite"),
    ),
    Mutant(
        "mirsearch/listing.py",
        "            order.insert(0, text_rank(q))\n",
        "",
        ("tests/test_catalog.py", "-k", "tags_name and sqlite"),
    ),
    Mutant(
        "migrations/versions/0011_text_index.py",
        "AFTER UPDATE OF title, artist, path ON tracks",
        "AFTER UPDATE OF title, artist ON tracks",
        ("tests/test_catalog.py", "-k", "renamed_and_removed"),
    ),
    Mutant(
        "migrations/versions/0012_genre_counts.py",
        "CREATE TRIGGER genre_counts_track_deleted BEFORE DELETE ON tracks\n",
        "CREATE TRIGGER genre_counts_track_deleted AFTER DELETE ON tracks\n",
        ("tests/test_catalog.py", "-k", "follow_every_change and sqlite"),
    ),
    Mutant(
        "web/api.py",
        "        if path.resolve() != path or path.stat().st_size != row.size_bytes:",
        "        if path.resolve() != path:",
        ("tests/test_web.py", "-k", "serves_only_an_indexed"),
    ),
    Mutant(
        "mirsearch/index.py",
        "kept = self._present(set(map(int, allowed_tracks)) - set(excluded))",
        "kept = self._present(set(map(int, allowed_tracks)))",
        ("tests/test_index.py", "-k", "together"),
    ),
    Mutant(
        "mirsearch/index.py",
        "if not 0 < len(windows) < 1 << WINDOW_BITS or windows.shape[1] != self._meta.dim:",
        "if windows.shape[1] != self._meta.dim:",
        ("tests/test_index.py", "-k", "keeps_the_track_vector"),
    ),
    Mutant(
        "mirsearch/index.py",
        "vector = normalise(windows.mean(axis=0) if track_vector is None else track_vector)",
        "vector = normalise(windows.mean(axis=0))",
        ("tests/test_index.py", "-k", "keeps_the_track_vector"),
    ),
    Mutant(
        "mirsearch/levels.py",
        "    return sounding | (not sounding.any())",
        "    return sounding",
        ("tests/test_embeddings.py", "-k", "no_window_of_sound"),
    ),
    Mutant(
        "mirsearch/verification.py",
        "        abs(line.speed - alignment.speed) > RECHECK_MIN_CHANGE\n        or",
        "        False\n        or",
        ("tests/test_verification.py", "-k", "checked_again_along_it"),
    ),
    Mutant(
        "mirsearch/verification.py",
        "free = (low < best) & (best < high)",
        "free = np.ones(best.shape, bool)",
        ("tests/test_verification.py", "-k", "pinned_at_the_edge"),
    ),
    Mutant(
        "mirsearch/files.py",
        "return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0",
        "return len(head) >= 2 and head[0] == 0xFF",
        ("tests/test_files.py", "-k", "cover_art"),
    ),
    Mutant(
        "mirsearch/files.py",
        "for e in reversed(entries) if e.is_dir(follow_symlinks=False))",
        "for e in reversed(entries) if e.is_dir())",
        ("tests/test_files.py", "-k", "link_to_a_folder"),
    ),
    Mutant(
        "mirsearch/headers.py",
        "OPEN_SIZES = (0, 0x7FFFF000, 0x7FFFFFFF, 0xFFFFFFFF)",
        "OPEN_SIZES = (0, 0xFFFFFFFF)",
        ("tests/test_headers.py", "-k", "sizes_left_open"),
    ),
    Mutant(
        "mirsearch/headers.py",
        "size = size << 7 | byte & 0x7F",
        "size = size << 8 | byte",
        ("tests/test_headers.py", "-k", "large_tag"),
    ),
    Mutant(
        "mirsearch/index.py",
        "theirs = np.isin(np.where(ids >= 0, ids >> WINDOW_BITS, -1), np.asarray(kept))",
        "theirs = ids >= 0",
        ("tests/test_index.py", "-k", "broad"),
    ),
    Mutant(
        "mirsearch/schema.py",
        'names = [genre or "", *(tag_genre or "").split(";")]',
        'names = [genre or "", tag_genre or ""]',
        ("tests/test_catalog.py", "-k", "several_genres and sqlite"),
    ),
    Mutant(
        "mirsearch/flags.py",
        'Track.duplicate_of.is_not(None), Track.status == "indexed"',
        "Track.duplicate_of.is_not(None)",
        ("tests/test_flags.py", "-k", "flagged_are and sqlite"),
    ),
    Mutant(
        "web/api.py",
        "if path.resolve() != path or path.stat().st_size != row.size_bytes:",
        "if path.stat().st_size != row.size_bytes:",
        ("tests/test_web.py", "-k", "only_an_indexed_track"),
    ),
    Mutant(
        "mirsearch/model_card.py",
        "view = np.lib.stride_tricks.as_strided(storage[storage_offset:], tuple(size), strides)",
        "view = np.lib.stride_tricks.as_strided(storage, tuple(size), strides)",
        ("tests/test_model_card.py", "-k", "views"),
    ),
    Mutant(
        "mirsearch/prefetch.py",
        "    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns",
        "    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns",
        ("tests/test_prefetch.py", "-k", "size_and_time_kept"),
    ),
    Mutant(
        "mirsearch/database.py",
        "        return str(sa.make_url(url))",
        "        return url",
        ("tests/test_database.py", "-k", "password"),
    ),
    Mutant(
        "mirsearch/api.py",
        "                found.setdefault(m.track_id, m)",
        "                found[m.track_id] = m",
        ("tests/test_api.py", "-k", "two_sound_tracks"),
    ),
    Mutant(
        "mirsearch/lines.py",
        "SPEED_PRIOR = 0.1",
        "SPEED_PRIOR = 0.0",
        ("tests/test_lines.py", "-k", "every_speed"),
    ),
    Mutant(
        "mirsearch/lines.py",
        "if line is not None and (near[k] or line.duration_s >= config.far_min_s):",
        "if line is not None:",
        ("tests/test_lines.py", "-k", "far_min_s"),
    ),
    Mutant(
        "mirsearch/lines.py",
        "track_offset_s=float(max(0.0, speed * start + offset)),",
        "track_offset_s=float(speed * start + offset),",
        ("tests/test_lines.py", "-k", "begin_before"),
    ),
    Mutant(
        "mirsearch/spectrogram.py",
        "weights = np.maximum(np.minimum(rising, falling), 0.0) / scale",
        "weights = np.maximum(np.minimum(rising, falling), 0.0)",
        ("tests/test_features.py", "-k", "moved_filterbank"),
    ),
    Mutant(
        "mirsearch/matcher.py",
        "m[..., (start - low) // s : (start - low) // s + -(-(end - start) // s)]",
        "m[..., (start - low) // s : (start - low) // s + (end - start) // s]",
        ("tests/test_matcher.py", "-k", "every_column"),
    ),
    Mutant(
        "mirsearch/resources.py",
        "        if loaded.card.sha256 != self.card.sha256:",
        "        if False:",
        ("tests/test_resources.py", "-k", "replaced"),
    ),
    Mutant(
        "mirsearch/vocabulary.py",
        "merged[name] = max(merged.get(name, 0.0), p)",
        "merged[name] = p",
        ("tests/test_vocabulary.py",),
    ),
    Mutant(
        "mirsearch/trainer.py",
        "        self.model.load_state_dict(best[2])\n",
        "",
        ("tests/test_trainer.py", "-k", "early_stopping"),
    ),
    Mutant(
        "mirsearch/trainer.py",
        "            val_loss = val_genre + c.contrastive_weight * val_invariance",
        "            val_loss = val_genre",
        ("tests/test_trainer.py", "-k", "early_stopping"),
    ),
    Mutant(
        "mirsearch/augment.py",
        "speed = self._uniform(c.speed) if heavy and self._chance(c.speed) else 1.0",
        "speed = self._uniform(c.speed) if self._chance(c.speed) else 1.0",
        ("tests/test_augment.py",),
    ),
    Mutant(
        "mirsearch/augment.py",
        "pitch = speed * 2 ** (semitones / 12)",
        "pitch = 2 ** (semitones / 12)",
        ("tests/test_augment.py",),
    ),
    Mutant(
        "mirsearch/neighbours.py",
        "contiguous = ids[-1] - ids[0] + 1 == ids.size",
        "contiguous = True",
        ("tests/test_index.py", "-k", "the_track_between"),
    ),
    Mutant(
        "mirsearch/fingerprint.py",
        "        size = (n + 7) // 8",
        "        size = n // 8",
        ("tests/test_fingerprint.py", "-k", "any_length"),
    ),
    Mutant(
        "mirsearch/generations.py",
        '        with open(temp, "rb+") as f:\n            os.fsync(f.fileno())\n',
        "",
        ("tests/test_index.py", "-k", "on_disk_before"),
    ),
    Mutant(
        "mirsearch/teacher.py",
        "probabilities.append(torch.sigmoid(logits))",
        "probabilities.append(torch.softmax(logits, dim=-1))",
        ("tests/test_teacher.py", "-k", "what_musicnn_answers"),
    ),
    Mutant(
        "mirsearch/verification.py",
        "energies = (weights * np.square(chunks)).sum(axis=(1, 2))",
        "energies = np.square(chunks).sum(axis=(1, 2))",
        ("tests/test_verification.py",),
    ),
    Mutant(
        "mirsearch/correlation.py",
        "        - 2 * (means * sums).sum(axis=1)\n",
        "",
        ("tests/test_correlation.py",),
    ),
    Mutant(
        "mirsearch/readings.py",
        "wide = dataclasses.replace(config, verify_max_lag_s=config.under_talk_max_lag_s)",
        "wide = config",
        ("tests/test_duplicates.py",),
    ),
    Mutant(
        "mirsearch/repeating.py",
        "return np.minimum(np.exp(logs @ mean.T), power)",
        "return np.exp(logs @ mean.T)",
        ("tests/test_repeating.py",),
    ),
    Mutant(
        "mirsearch/cli/queries.py",
        '        threadpool_limits(1, user_api="blas")',
        "        pass",
        ("tests/test_cli.py", "-k", "blas"),
    ),
    Mutant(
        "mirsearch/api.py",
        "similar = [r for r in ranked_tracks if r.track_id not in itself][:similar_k]",
        "similar = ranked_tracks[:similar_k]",
        ("tests/test_api.py", "-k", "itself"),
    ),
    Mutant(
        "mirsearch/uploads.py",
        "return best_of(found, self._beside(upload, found))",
        "return found",
        ("tests/test_api.py", "-k", "mixed_12_db"),
    ),
    Mutant(
        "mirsearch/uploads.py",
        "if owned < config.rest_min_owned:",
        "if False:",
        ("tests/test_api.py", "-k", "mixed_12_db"),
    ),
    Mutant(
        "mirsearch/uploads.py",
        "probe_at_s=owned_at_s,",
        "probe_at_s=None,",
        ("tests/test_api.py", "-k", "under_the_end"),
    ),
    Mutant(
        "mirsearch/residual.py",
        "_emptied(rest[first:last], stretch, int(EMPTY_BLOCK_S * sample_rate))",
        "rest[first:last] *= 1",
        ("tests/test_residual.py",),
    ),
    Mutant(
        "mirsearch/residual.py",
        "if stretch is probe and share < min_share:",
        "if share < min_share:",
        ("tests/test_residual.py",),
    ),
    Mutant(
        "mirsearch/residual.py",
        "gain = np.sum(t * np.conj(s), axis=0)",
        "gain = np.sum(t * s, axis=0)",
        ("tests/test_residual.py",),
    ),
    Mutant(
        "mirsearch/residual.py",
        "shift = _best_shift(stretch, laid, 2 * lag, int(LAG_SPAN_S * sample_rate))",
        "shift = lag",
        ("tests/test_residual.py",),
    ),
    Mutant(
        "mirsearch/api.py",
        "        return set().union(*found.values())",
        "        return next(iter(found.values()))",
        ("tests/test_api.py", "-k", "several_genres"),
    ),
    Mutant(
        "mirsearch/search.py",
        "    by_votes = tracks[np.lexsort((tracks, -votes))][:budget].tolist()",
        "    by_votes = tracks[np.lexsort((tracks, votes))][:budget].tolist()",
        ("tests/test_search.py", "-k", "vote_for_most"),
    ),
    Mutant(
        "mirsearch/api.py",
        "            sounding=waveform.sounding(row.n_windows) if waveform else None,",
        "            sounding=None,",
        ("tests/test_api.py", "-k", "pauses"),
    ),
    Mutant(
        "mirsearch/api.py",
        "matches = ranked([m for m in self.match_candidates(samples) if m.score >= threshold])",
        "matches = [m for m in self.match_candidates(samples) if m.score >= threshold]",
        ("tests/test_api.py", "-k", "sped_up_copy"),
    ),
    Mutant(
        "mirsearch/features.py",
        "    key, confidence = estimate_key(x, sample_rate)",
        "    key, confidence = estimate_key(whole, sample_rate)",
        ("tests/test_features.py", "-k", "key_and_the_centroid"),
    ),
    Mutant(
        "mirsearch/features.py",
        "(power * freqs).sum() / (power.sum() + 1e-20)",
        "(np.sqrt(power) * freqs).sum() / (np.sqrt(power).sum() + 1e-20)",
        ("tests/test_features.py", "-k", "key_and_the_centroid"),
    ),
)


def applies(mutant: Mutant, root: Path = REPO) -> bool:
    """Whether `mutant`'s text is found exactly once in its file under `root`."""
    return (root / mutant.file).read_text().count(mutant.find) == 1


def survives(mutant: Mutant, root: Path) -> bool:
    """Whether the mutant's tests all pass with it in the tree at `root` (put back after)."""
    path = root / mutant.file
    original = path.read_text()
    path.write_text(original.replace(mutant.find, mutant.put))
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests],
            cwd=root,
            env=os.environ
            | {"PYTHONPATH": str(root)},  # this copy's package, not the installed one
            capture_output=True,
        )
    finally:
        path.write_text(original)
    return run.returncode == 0


def _copy_of_checkout(scratch: Path) -> Path:
    """The checkout's tracked files as they are now, in `scratch/mirsearch`, with ../shared
    beside it where the checkout has one."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout
    copy = scratch / "mirsearch"
    for name in filter(None, listed.decode().split("\0")):
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    if (REPO.parent / "shared").is_dir():
        (scratch / "shared").symlink_to(REPO.parent / "shared")
    return copy


def main() -> int:
    failed = 0
    with tempfile.TemporaryDirectory() as scratch:
        root = _copy_of_checkout(Path(scratch))
        for mutant in MUTANTS:
            where = f"{mutant.file}: {mutant.put.strip() or 'deleted: ' + mutant.find.strip()}"
            if not applies(mutant, root):
                verdict = "STALE (its line changed: update scripts/mutants.py)"
            elif survives(mutant, root):
                verdict = "SURVIVED (no test failed)"
            else:
                verdict = "killed"
            failed += verdict != "killed"
            print(f"{verdict:8}  {where.splitlines()[0]}", flush=True)
    print(f"{len(MUTANTS) - failed} of {len(MUTANTS)} mutants killed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
