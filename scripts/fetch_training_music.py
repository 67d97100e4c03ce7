"""Fetch freely licensed music (mostly game soundtracks) from Debian main for training, or with
--likeness the soundtracks kept apart to measure "sounds alike" on (bench/eval_retrieval.py)."""

import argparse
import collections
import hashlib
import logging
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import av

log = logging.getLogger("fetch_training_music")

# Held out for evaluation: never downloaded, whatever the command line says.
RESERVED = frozenset(
    {
        "supertuxkart-data",
        "freedroidrpg-data",
        "megaglest-data",
        "widelands-data",
        "openclonk-data",
        "flare-game",
        "blobwars-data",
        "nexuiz-music",
    }
)
# Already in ../shared/audio (evaluated separately); any package of these games is refused too.
EVAL_STEMS = (
    "wesnoth",
    "hedgewars",
    "supertux",
    "warzone2100",
    "lincity-ng",
    "xmoto",
    "extremetuxracer",
    "frozen-bubble",
    "fb-music",
    "scorched3d",
    "freedroid",
    "megaglest",
    "widelands",
    "openclonk",
    "flare",
    "blobwars",
    "nexuiz",
)

# Debian package -> regex over the file's path inside the package (archive members appear as
# "<archive path>/<member>") selecting its music files; sound effects and ambience are left out.
PACKAGES = {
    "naev-data": r"/snd/music/",  # space opera: orchestral, synth, ambient, battle themes
    "berusky2-data": r"/music/",  # piano, relaxing electronica, short comic jingles
    "colobot-common-sounds": r"/music/",  # sci-fi electronic and orchestral
    "singularity-music": r"/music/",  # ambient electronic (Endgame: Singularity)
    "marsshooter-data": r"/audio/(music/|menu|tutorial)",  # metal, rock and orchestral
    "fretsonfire-songs-muldjord": r"/songs/",  # metal, as song and guitar stems
    "fretsonfire-songs-sectoid": r"/songs/",  # rock/metal, as song and guitar stems
    "unknown-horizons": r"/audio/music/",  # orchestral/folk, incl. Grieg's Peer Gynt
    "drascula-music": r"/drascula/",  # adventure-game score: jazzy, spooky, orchestral
    "trackballs-data": r"/music/",  # electronic, techno, C64-style
    "redeclipse-data": r"sounds/(music/|theme|original)|/maps/[^/]*\.ogg",  # techno/electronic FPS
    "pushover-data": r"/themes/",  # world-flavoured themes: aztec, japanese, greek, electro
    "starfighter-data": r"/music/",  # electronic and orchestral shmup tracks
    "fillets-ng-data": r"/music/",  # calm acoustic/orchestral puzzle music
    "hyperrogue-music": r"/music/",  # ambient, orchestral, ethnic-flavoured
    "warmux-data": r"/music/",  # rock, jazz, classical flute, circus
    "enigma-data": r"/music/",  # piano ragtime and calm electronic
    "zaz-data": r"/mus\d",  # rock/electronic arcade tracks
    "btanks-data": r"/tunes/",  # chiptune and electronic
    "ardentryst": r"/Music/",  # fantasy RPG orchestral
    "asc-music": r"\.mp3$",  # epic rock/orchestral
    "freedink-data": r"/Sound/.*\.ogg$",  # adventure RPG music
    "lordsawar-data": r"/music/",  # medieval/orchestral strategy
    "freeorion-data": r"\.ogg$",  # long ambient space piece
    "gigalomania-data": r"/music/",  # orchestral strategy themes
    "openarena-088-data": r"/music/",  # FPS rock/electronic (inside a .pk3)
    "0ad-data": r"public\.zip/audio/music/",  # orchestral, world music (Greek, Celtic...)
    "powermanga-data": r"/music_",  # chiptune (handheld console set)
    "a7xpg-data": r"/bgm",  # Kenta Cho shmups: electronic / techno loops
    "gunroar-data": r"/musics/",
    "mu-cade-data": r"/musics/",
    "parsec47-data": r"/ptn",
    "rrootage-data": r"/stg_",
    "titanion-data": r"/musics/",
    "torus-trooper-data": r"/musics/",
    "tumiki-fighters-data": r"/sounds/[a-z_]+\.ogg$",
    "mrrescue": r"/sfx/(opening|roof|bundesliga|scooterfest|rockerronni)\.",  # rock/pop game tunes
    "pinball-data": r"\.ogg$",  # pinball table music
    "tuxmath-data": r"\.ogg$",  # electronic / chiptune
    "lugaru-data": r"/Music",  # percussive/ambient action music
    "performous": r"/themes/",  # menu pop/electronic
    "cube2-data": r"/music/",  # FPS metal/rock
    "pink-pony-data": r"/music/",  # pop song
}
# Soundtracks no network here trains on, fetched with --likeness into their own folder: with the
# ../shared/audio packages the tagging branch never heard, 122 tracks of 14 soundtracks for
# precision@5 of "same soundtrack" (47 tracks, 23 of them heard in training, had moved ±0.03 from
# one training run to the next).
LIKENESS = {
    "ufoai-music": r"0music\.pk3/music/",  # orchestral, electronic, ambient strategy music
    "planetblupi-music-ogg": r"/music/",  # light pop/jazz/funk children's game themes
    "freecol": r"/resources/music/",  # folk and orchestral (sea shanties, colonial era)
    "amoebax-data": r"/music/",  # upbeat electronic/pop puzzle themes
    "wordwarvi-sound": r"/(dtox3monomix|lucky-holiday|lucky13-steve)",  # rock/blues guitar
    "caveexpress-data": r"/music-\d",  # adventure game themes
    "abe-data": r"/sounds/(game|intro)\.ogg$",  # retro platformer themes
    "alienblaster-data": r"/sound/(intro|playon)\.wav$",  # electronic shooter themes
    "funnyboat": r"/JDruid-",  # light orchestral/electronic theme
    "spacezero": r"/music\.wav$",  # electronic space theme
    "holotz-castle-data": r"/HC(Credits|MainTitle)\.wav$",  # chiptune-flavoured themes
}
assert not LIKENESS.keys() & PACKAGES.keys()
AUDIO_EXT = (".ogg", ".oga", ".opus", ".mp3", ".flac", ".wav", ".m4a", ".mod", ".xm", ".it", ".s3m")
ARCHIVE_EXT = (".zip", ".pk3", ".love")


def refused(pkg):
    return pkg in RESERVED or pkg.startswith(EVAL_STEMS)


def pattern(pkg):
    """The regex over a package's paths that selects its music."""
    return PACKAGES.get(pkg) or LIKENESS[pkg]


def duration(path):
    """Seconds of audio PyAV can decode, or None if it cannot (e.g. tracker modules)."""
    try:
        with av.open(str(path), metadata_errors="ignore") as c:
            stream = c.streams.audio[0]
            next(c.decode(stream))
            if c.duration:
                return c.duration / 1e6
            return sum(f.samples / f.sample_rate for f in c.decode(stream))
    except (av.FFmpegError, IndexError, StopIteration, UnicodeDecodeError) as e:
        log.warning("undecodable %s: %s", path.name, e)
        return None


def download(pkg, debs):
    found = sorted(debs.glob(f"{pkg}_*.deb"), key=lambda p: p.stat().st_mtime)
    if not found:
        cmd = ["apt-get", "download", "-q", pkg]
        if subprocess.run(cmd, cwd=debs, capture_output=True).returncode:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(cmd, cwd=debs, capture_output=True, check=True)
        found = sorted(debs.glob(f"{pkg}_*.deb"))
    return found[-1]


def candidates(root, pattern, tmp):
    """Yield (path inside the package, file on disk) for each matching audio file."""
    for f in sorted(root.rglob("*")):
        if f.is_symlink() or not f.is_file():
            continue
        rel = f.relative_to(root).as_posix()
        if f.suffix.lower() in AUDIO_EXT and re.search(pattern, rel):
            yield rel, f
        elif f.suffix.lower() in ARCHIVE_EXT and zipfile.is_zipfile(f):
            with zipfile.ZipFile(f) as z:
                for m in z.infolist():
                    name = f"{rel}/{m.filename}"
                    if m.filename.lower().endswith(AUDIO_EXT) and re.search(pattern, name):
                        out = tmp / ("member" + Path(m.filename).suffix)
                        with z.open(m) as src, open(out, "wb") as dst:
                            shutil.copyfileobj(src, dst)
                        yield name, out


def done_rows(out, pkg):
    """Rows (path, package, version, duration_s, sha1) of a finished package, else None."""
    done = out / pkg / ".manifest.tsv"
    return [ln.split("\t") for ln in done.read_text().splitlines()] if done.exists() else None


def fetch_package(pkg, out, min_seconds, seen):
    """Download and extract one package, copying its music and recording it in .manifest.tsv."""
    if refused(pkg):
        raise ValueError(f"{pkg} is reserved for evaluation and must not be fetched")
    if done_rows(out, pkg) is not None:
        return
    deb = download(pkg, out / "debs")
    version = subprocess.check_output(["dpkg-deb", "-f", deb, "Version"], text=True).strip()
    log.info("%s %s: extracting %s", pkg, version, deb.name)
    rows = []
    with tempfile.TemporaryDirectory(dir=out, prefix=".tmp-") as tmp:
        root = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
        licence = out / "licenses" / f"{pkg}.copyright"
        shutil.copyfile(root / "usr/share/doc" / pkg / "copyright", licence)
        for rel, f in candidates(root, pattern(pkg), Path(tmp)):
            digest = hashlib.sha1(f.read_bytes()).hexdigest()
            if digest in seen:
                continue
            secs = duration(f)
            if secs is None or secs < min_seconds:
                continue
            seen.add(digest)
            rel = re.sub(r"\.(zip|pk3|love)/", "/", re.sub(r"^usr/share/(games/)?", "", rel))
            dest = out / pkg / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
            rows.append([dest.relative_to(out).as_posix(), pkg, version, f"{secs:.1f}", digest])
    (out / pkg).mkdir(exist_ok=True)
    (out / pkg / ".manifest.tsv").write_text("".join("\t".join(r) + "\n" for r in rows))
    log.info("%s: %d files, %.2f h", pkg, len(rows), sum(float(r[3]) for r in rows) / 3600)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, help="default: var/training_music (var/likeness_music)")
    ap.add_argument("--packages", nargs="*", help="subset of the built-in package list")
    ap.add_argument("--likeness", action="store_true", help="the soundtracks kept to measure on")
    ap.add_argument("--min-seconds", type=float, default=30.0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    listed = LIKENESS if args.likeness else PACKAGES
    selected = args.packages or list(listed)
    for pkg in selected:
        if refused(pkg) or pkg not in listed:
            ap.error(f"refusing {pkg}: reserved for evaluation or not in the package list")
    default = "var/likeness_music" if args.likeness else "var/training_music"
    out = (args.out or Path(default)).resolve()
    for d in ("debs", "licenses"):
        (out / d).mkdir(parents=True, exist_ok=True)
    seen, failed = {r[4] for pkg in listed for r in done_rows(out, pkg) or []}, []
    for pkg in selected:
        try:
            fetch_package(pkg, out, args.min_seconds, seen)
        except (subprocess.CalledProcessError, OSError, zipfile.BadZipFile) as e:
            log.error("%s failed: %s", pkg, e)
            failed.append(pkg)
    rows = sorted(r[:4] for pkg in listed for r in done_rows(out, pkg) or [])
    lines = ["path\tpackage\tversion\tduration_s"] + ["\t".join(r) for r in rows]
    (out / "manifest.tsv").write_text("\n".join(lines) + "\n")
    files, hours = collections.Counter(r[1] for r in rows), collections.Counter()
    for _, pkg, _, secs in rows:
        hours[pkg] += float(secs) / 3600
    for pkg, h in hours.most_common():
        print(f"{pkg:32s} {files[pkg]:4d} files {h:6.2f} h")
    total = sum(hours.values())
    print(f"TOTAL {len(rows)} files, {total:.2f} h; failed: {', '.join(failed) or 'none'}")


if __name__ == "__main__":
    main()
